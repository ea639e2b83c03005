/* The in-memory layout of a GPTQ-quantized Linear after load-time repacking ("qk" layout),
 * the form our fused dequantizing kernels read.  Plain structs and constants only, so the
 * CUDA side can share it later.  The checkpoint format it is built from is in
 * quant/pack.h; the builders and the CPU kernels are in kernels/cpu/qmatmul.h.
 *
 * Input order.  Inputs are reordered so that every group's inputs are contiguous and
 * groups follow each other in group order (exllama's act-order treatment): a stable sort
 * of the input columns by g_idx.  Each group is then padded to a multiple of 32 inputs
 * (a "chunk"), so no chunk straddles two groups; padded positions get code 0 and a zero
 * activation, so they contribute nothing.  For the usual layers (monotonic g_idx, group
 * size a multiple of 32 or -1) nothing moves and nothing is padded (perm == NULL).
 *
 *   position p in [0, in_pad) of the kernel order holds input perm[p] (−1 = padding)
 *   chunk c = positions [32c, 32c+32), all in one group
 *   group g = chunks [group_chunk[g], group_chunk[g+1])
 *
 * The kernels permute the activations once per call (x_perm[p] = x[perm[p]]) instead of
 * gathering scales per input.
 *
 * Weights.  Per output row, chunks are stored in blocks of 16 little-endian 32-bit words
 * (64 bytes, one cache line, one AVX-512 register).  A block holds C = chunks_per_block
 * chunks (C = 16/bits: 8 for 2-bit, 4 for 4-bit, 2 for 8-bit; 5 for 3-bit, whose top two
 * bits per word are unused).  Chunk slot j of a block, input t in 0..31 of the chunk:
 *
 *   word (lane)  t % 16
 *   code index   k = 2j + t/16           bits [k·bits, (k+1)·bits) of that word
 *
 * So one AND (or a shift for the top code) of the whole block extracts 16 codes that
 * belong to 16 consecutive inputs: lane i of code k is input 32j + 16(k&1) + i of the
 * block's chunk j.  An AVX2 kernel reads the block as two halves of 8 words (inputs +0..7
 * and +8..15 of each 16).  A row has row_blocks = ceil(nchunks / C) blocks; unused slots
 * of the last block are zero.
 *
 * Scales and zero points, per (row, group), row-major so a row's are contiguous:
 *   scales[o·groups + g]   fp16 bits
 *   zeros[o·groups + g]    zero point − zero_base (0..255)
 * zero_base is 1 for layers from "gptq" (v1) checkpoints, which store zero − 1 (real zero
 * points 1..maxq+1, so 8-bit can reach 256), and 0 for "gptq_v2" (0..maxq).
 * The weight is w[o][perm[p]] = scale · (code − (zeros + zero_base)), exactly in fp32. */
#ifndef GPTQ_KERNELS_CPU_QTYPES_H
#define GPTQ_KERNELS_CPU_QTYPES_H

#include <assert.h>
#include <stdint.h>

#define QK_CHUNK 32       /* inputs per chunk; every chunk lies in one group */
#define QK_BLOCK_WORDS 16 /* 32-bit words per block */
#define QK_HALF 16        /* inputs per code index of a block (= QK_BLOCK_WORDS) */

/* Chunks per 64-byte block for a bit width (2, 3, 4 or 8). */
#define QK_CHUNKS_PER_BLOCK(bits) (16 / (bits))

/* One block of packed codes: 64 bytes, 64-byte aligned in qk_layer.qw. */
typedef struct {
    uint32_t w[QK_BLOCK_WORDS];
} qk_block;

static_assert(sizeof(qk_block) == 64, "a qk block is one 64-byte cache line");
static_assert(QK_CHUNK == 2 * QK_HALF, "a chunk is two code indices of a block");
static_assert(QK_CHUNKS_PER_BLOCK(2) * 2 * 2 == 32 && QK_CHUNKS_PER_BLOCK(4) * 2 * 4 == 32 &&
                  QK_CHUNKS_PER_BLOCK(8) * 2 * 8 == 32 && QK_CHUNKS_PER_BLOCK(3) * 2 * 3 == 30,
              "2/4/8-bit blocks use all 32 bits of a word, 3-bit blocks 30");

/* One repacked quantized Linear, weight (out, in).  Owns all its arrays. */
typedef struct {
    int64_t out, in;     /* logical shape; in % 32 == 0 */
    int64_t in_pad;      /* positions in kernel order, 32 · nchunks (== in unless groups are padded) */
    int64_t nchunks;     /* in_pad / 32 */
    int64_t groups;      /* G */
    int64_t row_blocks;  /* blocks per output row: ceil(nchunks / chunks_per_block) */
    int bits;            /* 2, 3, 4 or 8 */
    int chunks_per_block;
    int zero_base;       /* real zero point = zeros[] + zero_base (1: v1 checkpoint, 0: v2) */
    int act_order;       /* 1 if perm != NULL (inputs reordered or padded) */
    qk_block *qw;        /* (out, row_blocks) */
    uint16_t *scales;    /* (out, groups) fp16 */
    uint8_t *zeros;      /* (out, groups) zero point − zero_base */
    int32_t *group_chunk; /* (groups + 1) first chunk of each group; group_chunk[groups] = nchunks */
    int32_t *perm;       /* (in_pad) input at each position, −1 for padding; NULL = identity */
    float xfac[16];      /* per code index k of a block: 2^−(k·bits) if the SIMD kernels extract
                            code k with an AND (value code·2^(k·bits)), else 1 (top code, shift);
                            the SIMD kernels pre-scale activations by it so products are exact */
} qk_layer;

#endif
