/* --device cuda for the CLI commands (tools/device_cuda.c): bench, perplexity and generate
 * call these, which exist in every build; without CUDA they fail with one clear error. */
#ifndef GPTQ_TOOLS_DEVICE_CUDA_H
#define GPTQ_TOOLS_DEVICE_CUDA_H

/* Loads MODEL_DIR onto the GPU, prefills prompt_len random tokens, decodes gen more, best
 * of reps; prints the figures (JSON last line with json).  Returns the exit code. */
int bench_cuda(const char *model_dir, int prompt_len, int gen, int reps, int json);

/* Perplexity of ids (n tokens) in windows of ctx through the GPU forward pass of
 * MODEL_DIR into r (model/perplexity.h).  0, or -1 with an error (also in builds without
 * CUDA). */
int perplexity_cuda(const char *model_dir, const int *ids, long n, int ctx, int max_windows, void *r);

/* generate: the model on the GPU (context max_seq, max_batch tokens per call), a forward
 * step returning the host logits of the last token (NULL + error), and freeing it. */
void *generate_cuda_load(const char *model_dir, int max_seq, int max_batch);
const float *generate_cuda_forward(void *m, const int *ids, int n, int pos0);
void generate_cuda_free(void *m);

#endif
