#include "kernels/cpu/dense.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/cpu_features.h"

/* ---- row dot products: scalar reference and AVX2 ---- */

static float dot_scalar(const float *x, const void *w, gptq_dtype dt, int64_t n) {
    float acc = 0;
    if (dt == DT_F32) {
        const float *r = w;
        for (int64_t i = 0; i < n; i++) acc += x[i] * r[i];
    } else if (dt == DT_BF16) {
        const uint16_t *r = w;
        for (int64_t i = 0; i < n; i++) acc += x[i] * bf16_to_f32(r[i]);
    } else {
        const uint16_t *r = w;
        for (int64_t i = 0; i < n; i++) acc += x[i] * f16_to_f32(r[i]);
    }
    return acc;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) static float dot_avx2(const float *x, const void *w, gptq_dtype dt, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    if (dt == DT_F32) {
        const float *r = w;
        for (; i + 16 <= n; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(r + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(r + i + 8), a1);
        }
    } else if (dt == DT_BF16) {
        const uint16_t *r = w;
        for (; i + 16 <= n; i += 16) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(r + i));
            __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(raw)), 16));
            __m256 w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(raw, 1)), 16));
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), w0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), w1, a1);
        }
    } else {
        const uint16_t *r = w;
        for (; i + 16 <= n; i += 16) {
            __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i)));
            __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + i + 8)));
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), w0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), w1, a1);
        }
    }
    float acc = hsum256(_mm256_add_ps(a0, a1));
    size_t esz = dtype_size(dt);
    if (i < n) acc += dot_scalar(x + i, (const char *)w + i * esz, dt, n - i);
    return acc;
}

/* AVX-512: 32 weights per step, two accumulators; about half the instructions per byte
 * of the AVX2 loop, which matters for the one big dense GEMV of decode (lm_head). */
__attribute__((target("avx512f,avx512bw,avx2,fma,f16c"))) static float dot_avx512(const float *x, const void *w, gptq_dtype dt,
                                                                                  int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    if (dt == DT_F32) {
        const float *r = w;
        for (; i + 32 <= n; i += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(r + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(r + i + 16), a1);
        }
    } else if (dt == DT_BF16) {
        const uint16_t *r = w;
        for (; i + 32 <= n; i += 32) {
            const __m512i raw = _mm512_loadu_si512((const void *)(r + i));
            const __m512 w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(raw)), 16));
            const __m512 w1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(raw, 1)), 16));
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), w0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), w1, a1);
        }
    } else {
        const uint16_t *r = w;
        for (; i + 32 <= n; i += 32) {
            const __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i)));
            const __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + i + 16)));
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), w0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), w1, a1);
        }
    }
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    if (i < n) acc += dot_avx2(x + i, (const char *)w + i * dtype_size(dt), dt, n - i);
    return acc;
}
#endif

float dense_dot_ex(const float *x, const void *wrow, gptq_dtype dt, int64_t n, int level) {
#if defined(__x86_64__)
    const cpu_features *f = cpu_get_features();
    if (level >= 2 && f->avx512) return dot_avx512(x, wrow, dt, n);
    if (level >= 1 && f->avx2) return dot_avx2(x, wrow, dt, n);
#else
    (void)level;
#endif
    return dot_scalar(x, wrow, dt, n);
}

float dense_dot(const float *x, const void *wrow, gptq_dtype dt, int64_t n) { return dense_dot_ex(x, wrow, dt, n, 2); }

/* ---- GEMV and blocked GEMM ---- */

static void gemv(float *y, const float *x, const void *w, gptq_dtype dt, int64_t out, int64_t in) {
    size_t row_bytes = (size_t)in * dtype_size(dt);
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; o++) y[o] = dense_dot(x, (const char *)w + o * row_bytes, dt, in);
}

void dense_matmul(float *y, const float *x, int T, const void *w, gptq_dtype dt, int64_t out, int64_t in) {
    if (T <= 0 || out <= 0) return;
    if (T == 1) {
        gemv(y, x, w, dt, out, in);
        return;
    }
    if (dt == DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)out, (int)in, 1.0f, x, (int)in, w, (int)in, 0.0f, y,
                    (int)out);
        return;
    }
    /* Convert blocks of rows of W to fp32 (about 16 MiB at a time), then sgemm each block. */
    int64_t rows = (4 << 20) / in;
    if (rows < 64) rows = 64;
    if (rows > out) rows = out;
    float *wf = xaligned_alloc(sizeof(float) * rows * in);
    size_t esz = dtype_size(dt);
    for (int64_t o0 = 0; o0 < out; o0 += rows) {
        int64_t nr = out - o0 < rows ? out - o0 : rows;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < nr; r++) convert_to_f32(wf + r * in, (const char *)w + (o0 + r) * in * esz, dt, (size_t)in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)nr, (int)in, 1.0f, x, (int)in, wf, (int)in, 0.0f, y + o0,
                    (int)out);
    }
    free(wf);
}
