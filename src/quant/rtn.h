/* Round-to-nearest (RTN) quantization of a Linear weight: every group of columns of every
 * row gets its grid from the original weight (quantizer.h) and each value is rounded to
 * it independently.  The baseline GPTQ is measured against. */
#ifndef GPTQ_QUANT_RTN_H
#define GPTQ_QUANT_RTN_H

#include <stdint.h>

#include "quant/quantizer.h"

/* Quantizes w (out, in) row-major fp32 with groups of `group_size` consecutive columns
 * (-1 = one group per row; a last group shorter than group_size is fine).
 * Fills q (allocated here, free with quant_layer_free): codes (out, in), scales and zeros
 * (groups, out), g_idx (in) = i / group_size, and wq (out, in) the dequantized weight.
 * Returns 0, or -1 with an error for bad arguments. */
int rtn_quantize(const float *w, int64_t out, int64_t in, const quant_grid *grid, int group_size, quant_layer *q);

#endif
