/* The GPU half of `gptq bench` (tools/cmd_bench_cuda.c): --device cuda. */
#ifndef GPTQ_TOOLS_BENCH_CUDA_H
#define GPTQ_TOOLS_BENCH_CUDA_H

/* Loads MODEL_DIR onto the GPU, prefills prompt_len random tokens, decodes gen more, best
 * of reps; prints the figures (JSON last line with json).  Returns the exit code. */
int bench_cuda(const char *model_dir, int prompt_len, int gen, int reps, int json);

#endif
