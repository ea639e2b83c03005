/* llama.cpp's block formats (ggml_blocks.h): reference quantizers byte-exact with ggml's
 * quantize_row_*_ref (the quantizers llama-quantize uses without an importance matrix),
 * dequantizers, and the fixed-grid interface GPTQ uses.
 *
 * "Reference" here means round-to-nearest on a grid chosen from the values alone: Q4_0's
 * scale is max/-8 of the block's largest-magnitude value, Q4_1's is (max-min)/15 with min,
 * the K-quants search their sub-block scales (and mins) and then quantize those with a
 * super-block scale.  Arithmetic follows ggml's step by step (fp32, the same
 * multiplication orders, nearest_int's round-half-even trick), which is what makes the
 * bytes identical. */
#ifndef GPTQ_QUANT_GGML_QUANTS_H
#define GPTQ_QUANT_GGML_QUANTS_H

#include <stdint.h>

#include "io/ggml_types.h"

/* nrows rows of ne0 values (ne0 a multiple of the block size) from src (nrows, ne0) to
 * type t at dst (nrows · ggml_row_size(t, ne0) bytes).  t may also be F32, F16, BF16. */
void ggml_quantize_rows(ggml_type t, const float *src, int64_t nrows, int64_t ne0, void *dst);
/* The reverse: dst (nrows, ne0) fp32. */
void ggml_dequantize_rows(ggml_type t, const void *src, int64_t nrows, int64_t ne0, float *dst);
/* 1 if we can quantize to / dequantize from t. */
int ggml_quant_supported(ggml_type t);

/* Per-block grids (the GPTQ hook).  A block of type t (block_size values) is first fitted:
 * ggml_block_fit chooses its header (scales, mins, K-quant sub-block scales) from the
 * values x exactly as the reference quantizer does, and zeroes its codes.  Then each value
 * k is coded on that fixed grid by ggml_block_quant, which stores the code in the block
 * and returns the value llama.cpp will dequantize it to.  For K-quants the coding rule is
 * the reference's (the reference is fit + code of the unchanged values); for q4_0 .. q8_0 it
 * is the nearest point of the stored fp16 grid (the reference rounds with the unrounded
 * scale instead, which GPTQ has no reason to imitate). */
void ggml_block_fit(ggml_type t, const float *x, void *blk);
float ggml_block_quant(ggml_type t, void *blk, int k, float x);

#endif
