/* The GPU halves of `gptq bench` and `gptq perplexity` (tools/cmd_bench_cuda.c): --device cuda. */
#ifndef GPTQ_TOOLS_BENCH_CUDA_H
#define GPTQ_TOOLS_BENCH_CUDA_H

/* Loads MODEL_DIR onto the GPU, prefills prompt_len random tokens, decodes gen more, best
 * of reps; prints the figures (JSON last line with json).  Returns the exit code. */
int bench_cuda(const char *model_dir, int prompt_len, int gen, int reps, int json);

/* Perplexity of ids (n tokens) in windows of ctx through the GPU forward pass of
 * MODEL_DIR into r (model/perplexity.h).  0, or -1 with an error (also in builds without
 * CUDA). */
struct ppl_result;
int perplexity_cuda(const char *model_dir, const int *ids, long n, int ctx, int max_windows, void *r);

#endif
