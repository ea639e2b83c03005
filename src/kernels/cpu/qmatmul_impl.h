/* Internal interface between the qk dispatcher (qmatmul.c) and the per-ISA kernels
 * (qmatmul.c scalar, qmatmul_avx2.c, qmatmul_avx512.c).  Not for use outside kernels/cpu. */
#ifndef GPTQ_KERNELS_CPU_QMATMUL_IMPL_H
#define GPTQ_KERNELS_CPU_QMATMUL_IMPL_H

#include <stdint.h>

#include "kernels/cpu/qtypes.h"

/* Activations of one call, prepared once: x permuted into kernel order (and, for the
 * SIMD kernels, pre-scaled by xfac of each position's code index) and per-group sums. */
typedef struct {
    int T;
    const float *x;    /* (T, in_pad), 64-byte aligned rows (in_pad % 16 == 0) */
    const float *xsum; /* (T, groups): Σ of the unscaled activations of each group */
} qk_acts;

/* y (T, out) for output rows [o0, o1) and all T tokens; T < 1 is not allowed. */
void qk_rows_scalar(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1);
void qk_rows_avx2(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1);
void qk_rows_avx512(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1);

/* Rows [o0, o1) dequantized in kernel order into w (o1 − o0, in_pad). */
void qk_dequant_scalar(const qk_layer *L, int64_t o0, int64_t o1, float *w);
void qk_dequant_avx2(const qk_layer *L, int64_t o0, int64_t o1, float *w);
void qk_dequant_avx512(const qk_layer *L, int64_t o0, int64_t o1, float *w);

/* Code k (0 .. 2C−1) of block word `word` (the plain value, no pre-scaling). */
static inline uint32_t qk_code(uint32_t word, int k, int bits) {
    return (word >> (k * bits)) & ((1u << bits) - 1u);
}

/* Whether the SIMD kernels extract code k with a shift (the top code of a full word)
 * rather than an AND (which leaves the code multiplied by 2^(k·bits)). */
static inline int qk_code_shifted(int k, int bits) { return (k + 1) * bits == 32; }

#endif
