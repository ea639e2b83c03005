/* GPTQ-protocol perplexity (model/perplexity.h) through the GPU forward pass: each window
 * is one prefill call (cuBLAS GEMMs), its logits come back to the host for the NLL. */
#ifndef GPTQ_MODEL_CUDA_PERPLEXITY_CUDA_H
#define GPTQ_MODEL_CUDA_PERPLEXITY_CUDA_H

#include "model/cuda/llama_cuda.h"
#include "model/perplexity.h"

/* m must have been loaded with max_seq >= ctx and max_batch >= ctx.  Fills r as
 * ppl_evaluate does (no reference figures).  -1 + error. */
int ppl_evaluate_cuda(llama_cuda *m, const int *ids, long n_ids, int ctx, int max_windows, ppl_result *r);

#endif
