/* Products with dense weight matrices stored in their file dtype (F32, F16 or BF16).
 *
 * y (T, out) = x (T, in) · Wᵀ, with W (out, in) row-major as in a PyTorch Linear.
 * T == 1 (decode) runs a GEMV that converts weights on the fly, OpenMP over rows;
 * larger T converts row blocks of W to fp32 and calls BLAS sgemm. Accumulation is fp32. */
#ifndef GPTQ_KERNELS_CPU_DENSE_H
#define GPTQ_KERNELS_CPU_DENSE_H

#include <stdint.h>

#include "core/dtype.h"

void dense_matmul(float *y, const float *x, int T, const void *w, gptq_dtype dt, int64_t out, int64_t in);

/* Dot product of fp32 x with one weight row of type dt (n elements). */
float dense_dot(const float *x, const void *wrow, gptq_dtype dt, int64_t n);
/* The same at most at SIMD level `level` (0 scalar, 1 AVX2, 2 AVX-512), for tests; a level
 * the CPU lacks falls back to the next lower one. */
float dense_dot_ex(const float *x, const void *wrow, gptq_dtype dt, int64_t n, int level);

#endif
