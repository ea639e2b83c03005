/* Packing quantized weights into the Hugging Face / AutoGPTQ GPTQ checkpoint format
 * (quantize_config checkpoint_format "gptq", i.e. v1), unpacking it again, and the
 * dequantize-on-load path.  Per quantized Linear (out, in) with G groups:
 *
 *   qweight  int32 (in·bits/32, out)   codes, packed along the input dimension
 *   qzeros   int32 (G, out·bits/32)    zero − 1, packed along the output dimension
 *   scales   fp16  (G, out)
 *   g_idx    int32 (in)                group of each input column
 *
 * Bit layout.  Along the packed dimension, the values form one little-endian bit stream:
 * value k occupies bits [k·bits, (k+1)·bits) of the stream, and stream bit b is bit b%32
 * of word b/32.  For 2, 4 and 8 bits that is "32/bits consecutive values per word, the
 * first in the low bits".  For 3 bits, 32 values fill exactly 3 words and two values
 * straddle word boundaries (AutoGPTQ's / GPTQ-for-LLaMa's 3-bit layout):
 *
 *   word 0: bit 31..30 | 29..27 | ... | 2..0        word 1: 31 | 30..28 | ... | 3..1 | 0
 *           v10[1:0]   | v9     | ... | v0                  v21[0] | v20 | ... | v11 | v10[2]
 *   word 2: 31..29 | ... | 4..2 | 1..0
 *           v31    | ... | v22  | v21[2:1]
 *
 * In qweight, column o of word rows [r·bits, (r+1)·bits) holds inputs 32r .. 32r+31 of
 * output o; in qzeros, row g holds the zero points of group g for outputs 0..out-1.
 *
 * Zero points: the v1 format stores zero − 1 masked to `bits` bits, and loaders read
 * stored + 1, so representable zero points are 1 .. maxq+1 (sym 4-bit: zero 8 is stored
 * as 7).  Packing a zero point of 0 fails (see v1_zero in quantizer.h).
 *
 * Shape requirements: in % 32 == 0 (all widths, as AutoGPTQ); out·bits % 32 == 0 for
 * qzeros, i.e. out % 16 (2-bit), out % 32 (3-bit), out % 8 (4-bit), out % 4 (8-bit). */
#ifndef GPTQ_QUANT_PACK_H
#define GPTQ_QUANT_PACK_H

#include <stdint.h>

#include "quant/quantizer.h"

/* 0 if (out, in, bits) can be packed; otherwise -1 and an error naming the reason. */
int gptq_pack_check(int64_t out, int64_t in, int bits);

/* codes (out, in) 0..maxq -> qweight (in·bits/32, out).  -1 + error on a code > maxq. */
int gptq_pack_qweight(const uint8_t *codes, int64_t out, int64_t in, int bits, int32_t *qweight);
/* qweight (in·bits/32, out) -> codes (out, in). */
void gptq_unpack_qweight(const int32_t *qweight, int64_t out, int64_t in, int bits, uint8_t *codes);
/* zeros (groups, out) real zero points 1..maxq+1 -> qzeros (groups, out·bits/32) holding
 * zero − 1.  -1 + error on a zero point outside 1..maxq+1. */
int gptq_pack_qzeros(const int32_t *zeros, int64_t groups, int64_t out, int bits, int32_t *qzeros);
/* qzeros (groups, out·bits/32) -> zeros (groups, out) = stored + 1. */
void gptq_unpack_qzeros(const int32_t *qzeros, int64_t groups, int64_t out, int bits, int32_t *zeros);

/* The tensors of one quantized Linear in checkpoint form (owned arrays). */
typedef struct {
    int64_t out, in, groups;
    int bits;
    int group_size;   /* -1 or > 0, as quantized (for the config; not stored in the tensors) */
    int32_t *qweight; /* (in·bits/32, out) */
    int32_t *qzeros;  /* (groups, out·bits/32) */
    uint16_t *scales; /* (groups, out) fp16 bits */
    int32_t *g_idx;   /* (in) */
} gptq_packed;

/* q -> checkpoint tensors (allocated here; free with gptq_packed_free).  Fails (-1 + error)
 * on shapes the format cannot hold, codes > maxq, zero points outside 1..maxq+1, a g_idx
 * outside 0..groups-1, or a scale that is not exactly an fp16 value. */
int gptq_pack(const quant_layer *q, gptq_packed *pk);
/* Checkpoint tensors -> q (allocated here, free with quant_layer_free): codes, zeros
 * (stored + 1), scales (fp32 copies of the fp16 values), g_idx, and wq if with_wq.
 * group_size is taken from pk.  -1 + error on bad shapes or g_idx out of range. */
int gptq_unpack(const gptq_packed *pk, quant_layer *q, int with_wq);
void gptq_packed_free(gptq_packed *pk);

/* Dequantize-on-load straight from checkpoint tensors (which may be borrowed from a
 * memory map): w (out, in) fp32 = scales[g][o] · (code − (stored_zero + 1)), g = g_idx[i],
 * computed in fp32 (exact: the product of an fp16 value and a small integer), so it equals
 * the wq the quantizer evaluated.  -1 + error on bad shapes or g_idx out of range. */
int gptq_dequantize(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                    int64_t out, int64_t in, int64_t groups, int bits, float *w);

/* Storage of one quantized Linear in bits per weight: (qweight + qzeros + 16-bit scales
 * + 32-bit g_idx if with_g_idx) / (out·in).  group_size -1 = one group.  The HF format
 * always stores g_idx; pass with_g_idx 0 to count formats that imply it. */
double gptq_bits_per_weight(int64_t out, int64_t in, int bits, int group_size, int with_g_idx);
/* The same storage as an exact bit count (what bit budgets add up). */
int64_t gptq_storage_bits(int64_t out, int64_t in, int bits, int group_size, int with_g_idx);

#endif
