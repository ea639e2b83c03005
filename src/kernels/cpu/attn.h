/* Decode attention of one query head over a KV cache (kernels/cpu/attn.c). */
#ifndef GPTQ_KERNELS_CPU_ATTN_H
#define GPTQ_KERNELS_CPU_ATTN_H

#include <stddef.h>

/* out (hd) = Σ_p softmax_p(scale · q·k_p) · v_p over positions p < len, where k_p = k + p·stride
 * and v_p = v + p·stride (floats).  sc: scratch of len floats (left holding the
 * unnormalized exponentials).  Picks AVX-512 / AVX2 / scalar at run time. */
void attn_decode_head(float *out, const float *q, const float *k, const float *v, size_t stride, int len, int hd,
                      float scale, float *sc);
/* The same at most at SIMD level `level` (0 scalar, 1 AVX2, 2 AVX-512), for tests; falls
 * back to a lower level where the CPU or head_dim does not allow it. */
void attn_decode_head_ex(float *out, const float *q, const float *k, const float *v, size_t stride, int len, int hd,
                         float scale, float *sc, int level);

#endif
