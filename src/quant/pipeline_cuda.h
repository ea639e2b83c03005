/* quantize_model on the GPU (gptq quantize --device cuda; quant/cuda/pipeline_cuda.c, built
 * only with CUDA: callers check GPTQ_HAVE_CUDA).
 *
 * The same work as quant/pipeline.h's GPTQ path, in the same order with the same options,
 * so the two give nearly the same checkpoint:
 *   - the block's weights are streamed from host memory one block at a time, so the GPU
 *     holds one block's weights, the calibration activations (X fp32 (windows·seqlen, dim),
 *     the attention outputs fp16 (windows·seqlen, heads·head_dim)), one Hessian and its
 *     Cholesky factor, and the buffers of one chunk of windows;
 *   - the calibration forward pass runs through cuBLAS GEMMs on fp16 operands with fp32
 *     accumulation (the residual stream X stays fp32), attention as per-head batched GEMMs;
 *   - Hessians H = 2/windows · Σ XᵀX accumulate as cuBLAS GEMMs (fp16 operands, fp32 sums);
 *   - o->gpu_fp32: every GEMM operand (activations, weights) fp32 instead, without tensor
 *     cores: about 3x the time, Hessians and activations as the CPU's up to summation order;
 *   - each Linear goes through quant/cuda/gptq_cuda.h, the packed result through the same
 *     gptq_pack as on the CPU; later steps and blocks use the quantized weights.
 * Differences from the CPU: activations are rounded to fp16 before each product (unless
 * gpu_fp32), the GEMMs sum in another order and the Cholesky factors come from cuSOLVER, so
 * codes differ from the CPU's in a few places.
 * Not supported (an error says so): RTN, measurement / mixed precision (layer_gp,
 * measure), grid hooks (GGUF), resume hooks, blocks wider than 128 columns. */
#ifndef GPTQ_QUANT_PIPELINE_CUDA_H
#define GPTQ_QUANT_PIPELINE_CUDA_H

#include "quant/pipeline.h"

int quantize_model_cuda(llama_model *m, const calib_set *calib, const quant_options *o, quant_result *r);
/* 0 when a GPU can be used, else -1 with an error (checked before the model is loaded). */
int quantize_cuda_available(void);

#endif
