/* llama.cpp's quantization blocks, byte for byte as they sit in GGUF tensor data.
 *
 * A row of a weight (one output channel, ne0 = in values) is a sequence of blocks.  fp16
 * fields are IEEE half-precision bit patterns (little-endian).  Code layouts, with x the
 * block's values in order and q their integer codes:
 *
 *  q4_0  32 values, x = d·(q − 8), q 0..15: qs[j] = q[j] | q[j+16] << 4.
 *  q4_1  32 values, x = d·q + m, q 0..15, same nibble layout.
 *  q5_0  32 values, x = d·(q − 16), q 0..31: low nibbles as q4_0, bit 4 of q[j] in bit j
 *        of the little-endian u32 qh.
 *  q5_1  32 values, x = d·q + m, q 0..31, layout as q5_0.
 *  q8_0  32 values, x = d·q, q −128..127 (int8).
 *  K-quants: 256-value super-blocks of sub-blocks whose own scales (and mins) are
 *  integers multiplied by the fp16 super-block scales d (and dmin):
 *  q2_k  16 sub-blocks of 16: x = d·(sc & 15)·q − dmin·(sc >> 4), q 0..3, scales[j] = sc of
 *        sub-block j; 2-bit codes: in each half of 128 values, value 32·s + l (s 0..3, l 0..31)
 *        sits in qs[32·half + l] at bits 2s.
 *  q3_k  16 sub-blocks of 16: x = d·(s − 32)·(q − 4), q 0..7, s 6 bits: low 4 bits of s_j in
 *        scales[j % 8] (nibble j / 8), high 2 bits in scales[8 + j % 4] at bits 2·(j / 4);
 *        low 2 bits of q as q2_k, bit 2 of q for value k in hmask[k % 32] bit k / 32.
 *  q4_k  8 sub-blocks of 32: x = d·sc·q − dmin·m, q 0..15, 6-bit sc and m packed in 12 bytes
 *        (j < 4: sc in scales[j], m in scales[j+4] low 6 bits; j >= 4: low nibbles in
 *        scales[j+4], high 2 bits in the top bits of scales[j-4] (sc) and scales[j] (m));
 *        codes: in each 64 values, value l in qs[32·(k/64) + l] low nibble, value 32 + l in
 *        its high nibble.
 *  q5_k  as q4_k with q 0..31: bit 4 of value 64·p + l (l < 32) in qh[l] bit 2p, of value
 *        64·p + 32 + l in qh[l] bit 2p + 1.
 *  q6_k  16 sub-blocks of 16: x = d·sc·(q − 32), q 0..63, sc int8: in each half of 128
 *        values, value 32·s + l has its low nibble in ql[64·half + l + 32·(s & 1)] (nibble
 *        s >> 1) and its high 2 bits in qh[32·half + l] at bits 2s. */
#ifndef GPTQ_QUANT_GGML_BLOCKS_H
#define GPTQ_QUANT_GGML_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#define QK_LEGACY 32 /* values per q4_0 .. q8_0 block */
#define QK_K 256     /* values per K-quant super-block */

typedef uint16_t ggml_fp16; /* IEEE binary16 bits */

typedef struct {
    ggml_fp16 d;
    uint8_t qs[16];
} block_q4_0;

typedef struct {
    ggml_fp16 d, m;
    uint8_t qs[16];
} block_q4_1;

typedef struct {
    ggml_fp16 d;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_0;

typedef struct {
    ggml_fp16 d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_1;

typedef struct {
    ggml_fp16 d;
    int8_t qs[32];
} block_q8_0;

typedef struct {
    uint8_t scales[16]; /* low nibble scale, high nibble min */
    uint8_t qs[64];
    ggml_fp16 d, dmin;
} block_q2_k;

typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    ggml_fp16 d;
} block_q3_k;

typedef struct {
    ggml_fp16 d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} block_q4_k;

typedef struct {
    ggml_fp16 d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} block_q5_k;

typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    ggml_fp16 d;
} block_q6_k;

static_assert(sizeof(block_q4_0) == 18, "block_q4_0 is 18 bytes");
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 is 20 bytes");
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 is 22 bytes");
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 is 24 bytes");
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes");
static_assert(sizeof(block_q2_k) == 84, "block_q2_k is 84 bytes");
static_assert(sizeof(block_q3_k) == 110, "block_q3_k is 110 bytes");
static_assert(sizeof(block_q4_k) == 144, "block_q4_k is 144 bytes");
static_assert(sizeof(block_q5_k) == 176, "block_q5_k is 176 bytes");
static_assert(sizeof(block_q6_k) == 210, "block_q6_k is 210 bytes");

#endif
