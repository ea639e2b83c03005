/* Decode attention for one query head: scores against every cached key, softmax, and the
 * weighted sum of the cached values.  Decode spends a few percent of each token here (the
 * cache is small next to the weights), but the portable loop ran 4-wide with its output
 * vector in memory; the SIMD versions keep the output in registers across positions.
 * Results differ from the scalar loop only by fp32 summation order. */
#include "kernels/cpu/attn.h"

#include <math.h>

#include "kernels/cpu/cpu_features.h"

static void attn_head_scalar(float *out, const float *q, const float *k, const float *v, size_t stride, int len, int hd,
                             float scale, float *sc) {
    float mx = -INFINITY;
    for (int p = 0; p < len; p++) {
        const float *kp = k + (size_t)p * stride;
        float d = 0;
        for (int i = 0; i < hd; i++) d += q[i] * kp[i];
        sc[p] = d * scale;
        if (sc[p] > mx) mx = sc[p];
    }
    float sum = 0;
    for (int p = 0; p < len; p++) sum += sc[p] = expf(sc[p] - mx);
    const float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int p = 0; p < len; p++) {
        const float *vp = v + (size_t)p * stride, w = sc[p] * inv;
        for (int i = 0; i < hd; i++) out[i] += w * vp[i];
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define MAXV512 16 /* head_dim up to 256 */
#define MAXV256 16 /* head_dim up to 128 */

/* Softmax of sc[0..len) in place, returning 1/Σ (exp through libm, as the scalar path). */
static float softmax_unnormalized(float *sc, int len, float mx) {
    float sum = 0;
    for (int p = 0; p < len; p++) sum += sc[p] = expf(sc[p] - mx);
    return 1.0f / sum;
}

T512 static void attn_head_avx512(float *out, const float *q, const float *k, const float *v, size_t stride, int len,
                                  int hd, float scale, float *sc) {
    const int nv = hd / 16;
    __m512 qv[MAXV512], acc[MAXV512];
    for (int j = 0; j < nv; j++) qv[j] = _mm512_loadu_ps(q + 16 * j);
    float mx = -INFINITY;
    for (int p = 0; p < len; p++) {
        const float *kp = k + (size_t)p * stride;
        __m512 d = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kp));
        for (int j = 1; j < nv; j++) d = _mm512_fmadd_ps(qv[j], _mm512_loadu_ps(kp + 16 * j), d);
        const float s = _mm512_reduce_add_ps(d) * scale;
        sc[p] = s;
        mx = s > mx ? s : mx;
    }
    const float inv = softmax_unnormalized(sc, len, mx);
    for (int j = 0; j < nv; j++) acc[j] = _mm512_setzero_ps();
    for (int p = 0; p < len; p++) {
        const float *vp = v + (size_t)p * stride;
        const __m512 w = _mm512_set1_ps(sc[p] * inv);
        for (int j = 0; j < nv; j++) acc[j] = _mm512_fmadd_ps(w, _mm512_loadu_ps(vp + 16 * j), acc[j]);
    }
    for (int j = 0; j < nv; j++) _mm512_storeu_ps(out + 16 * j, acc[j]);
}

T256 static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T256 static void attn_head_avx2(float *out, const float *q, const float *k, const float *v, size_t stride, int len, int hd,
                                float scale, float *sc) {
    const int nv = hd / 8;
    __m256 qv[MAXV256], acc[MAXV256];
    for (int j = 0; j < nv; j++) qv[j] = _mm256_loadu_ps(q + 8 * j);
    float mx = -INFINITY;
    for (int p = 0; p < len; p++) {
        const float *kp = k + (size_t)p * stride;
        __m256 d = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kp));
        for (int j = 1; j < nv; j++) d = _mm256_fmadd_ps(qv[j], _mm256_loadu_ps(kp + 8 * j), d);
        const float s = hsum8(d) * scale;
        sc[p] = s;
        mx = s > mx ? s : mx;
    }
    const float inv = softmax_unnormalized(sc, len, mx);
    for (int j = 0; j < nv; j++) acc[j] = _mm256_setzero_ps();
    for (int p = 0; p < len; p++) {
        const float *vp = v + (size_t)p * stride;
        const __m256 w = _mm256_set1_ps(sc[p] * inv);
        for (int j = 0; j < nv; j++) acc[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vp + 8 * j), acc[j]);
    }
    for (int j = 0; j < nv; j++) _mm256_storeu_ps(out + 8 * j, acc[j]);
}
#endif

void attn_decode_head_ex(float *out, const float *q, const float *k, const float *v, size_t stride, int len, int hd,
                         float scale, float *sc, int level) {
#if defined(__x86_64__)
    const cpu_features *f = cpu_get_features();
    if (level >= 2 && f->avx512 && hd % 16 == 0 && hd <= 16 * MAXV512) {
        attn_head_avx512(out, q, k, v, stride, len, hd, scale, sc);
        return;
    }
    if (level >= 1 && f->avx2 && hd % 8 == 0 && hd <= 8 * MAXV256) {
        attn_head_avx2(out, q, k, v, stride, len, hd, scale, sc);
        return;
    }
#else
    (void)level;
#endif
    attn_head_scalar(out, q, k, v, stride, len, hd, scale, sc);
}

void attn_decode_head(float *out, const float *q, const float *k, const float *v, size_t stride, int len, int hd,
                      float scale, float *sc) {
    attn_decode_head_ex(out, q, k, v, stride, len, hd, scale, sc, 2);
}
