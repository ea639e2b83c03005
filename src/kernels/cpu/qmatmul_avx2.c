/* AVX2+FMA+F16C kernels over the qk layout (qtypes.h): the decode GEMV, the tiled GEMM
 * for a few tokens, and row dequantization for the sgemm path.  A 64-byte block is read
 * as two ymm halves (words 0..7 and 8..15): code index k of half h covers inputs
 * 16(k&1) + 8h + 0..7 of its chunk.  Activations come pre-scaled by xfac (qtypes.h), so a
 * masked, unshifted code converts straight to an exact product.  Same structure as
 * qmatmul_avx512.c. */
#include "kernels/cpu/qmatmul_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline))
#define QK_PF 8 /* blocks ahead to prefetch in each row stream */

TGT INL __m256 code_f(__m256i W, const int k, const int bits) {
    if ((k + 1) * bits == 32) return _mm256_cvtepi32_ps(_mm256_srli_epi32(W, 32 - bits));
    return _mm256_cvtepi32_ps(_mm256_and_si256(W, _mm256_set1_epi32(((1 << bits) - 1) << (k * bits))));
}

TGT INL __m256 code_exact(__m256i W, const int k, const int bits) {
    __m256i v = k ? _mm256_srli_epi32(W, k * bits) : W;
    if ((k + 1) * bits != 32) v = _mm256_and_si256(v, _mm256_set1_epi32((1 << bits) - 1));
    return _mm256_cvtepi32_ps(v);
}

TGT INL float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* cv[t] (vector, lanes to be summed) = Σ_g s_g·z_g·xsum[t][g] for row o. */
TGT INL void zero_terms(const qk_layer *L, int64_t o, const float *xsum, int64_t ldxs, const int ntok, __m256 *cv) {
    const int64_t G = L->groups;
    const uint16_t *sc = L->scales + o * G;
    const uint8_t *zr = L->zeros + o * G;
    for (int t = 0; t < ntok; t++) cv[t] = _mm256_setzero_ps();
    int64_t g = 0;
    if (G >= 8) {
        const __m256 zb = _mm256_set1_ps((float)L->zero_base);
        for (; g + 8 <= G; g += 8) {
            const __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + g)));
            const __m256 z = _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(zr + g)))), zb);
            const __m256 sz = _mm256_mul_ps(s, z);
            for (int t = 0; t < ntok; t++) cv[t] = _mm256_fmadd_ps(sz, _mm256_loadu_ps(xsum + t * ldxs + g), cv[t]);
        }
    }
    for (; g < G; g++) {
        const float sz = _cvtsh_ss(sc[g]) * (float)(zr[g] + L->zero_base);
        for (int t = 0; t < ntok; t++)
            cv[t] = _mm256_add_ps(cv[t], _mm256_set_ps(0, 0, 0, 0, 0, 0, 0, sz * xsum[t * ldxs + g]));
    }
}

/* y[o .. o+R) for one token: Σ_g s_g·dot(code, x)_g − Σ_g s_g·z_g·Σx_g, R rows sharing
 * the activation loads (see qmatmul_avx512.c).  Two accumulators per row keep the
 * working set within the 16 ymm registers. */
TGT INL void gemv_rows(const qk_layer *L, const float *x, const float *xsum, float *y, int64_t o, const int bits,
                       const int R) {
    const int C = 16 / bits;
    const int64_t nch = L->nchunks, G = L->groups, rb = L->row_blocks;
    const qk_block *blk = L->qw + o * rb;
    const uint16_t *sc = L->scales + o * G;
    const int32_t *gc = L->group_chunk;
    __m256 acc[2], d0[2], d1[2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) acc[r] = d0[r] = d1[r] = _mm256_setzero_ps();
    int64_t g = 0, next = gc[1], c = 0;
    for (; c < nch; blk++) {
        __m256i W0[2], W1[2];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            W0[r] = _mm256_load_si256((const __m256i *)blk[r * rb].w);
            W1[r] = _mm256_load_si256((const __m256i *)(blk[r * rb].w + 8));
            _mm_prefetch((const char *)blk[r * rb + QK_PF].w, _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int j = 0; j < C; j++) {
            if (c == nch) break;
            while (c == next) {
#pragma GCC unroll 2
                for (int r = 0; r < R; r++) {
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(sc[r * G + g])), _mm256_add_ps(d0[r], d1[r]), acc[r]);
                    d0[r] = d1[r] = _mm256_setzero_ps();
                }
                g++;
                next = gc[g + 1];
            }
            const float *xp = x + c * QK_CHUNK;
            const __m256 x0 = _mm256_load_ps(xp), x1 = _mm256_load_ps(xp + 8), x2 = _mm256_load_ps(xp + 16),
                         x3 = _mm256_load_ps(xp + 24);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                d0[r] = _mm256_fmadd_ps(code_f(W0[r], 2 * j, bits), x0, d0[r]);
                d1[r] = _mm256_fmadd_ps(code_f(W1[r], 2 * j, bits), x1, d1[r]);
            }
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                d0[r] = _mm256_fmadd_ps(code_f(W0[r], 2 * j + 1, bits), x2, d0[r]);
                d1[r] = _mm256_fmadd_ps(code_f(W1[r], 2 * j + 1, bits), x3, d1[r]);
            }
            c++;
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(sc[r * G + g])), _mm256_add_ps(d0[r], d1[r]), acc[r]);
        __m256 cv;
        zero_terms(L, o + r, xsum, G, 1, &cv);
        y[o + r] = hsum(_mm256_sub_ps(acc[r], cv));
    }
}

TGT INL void gemm_row(const qk_layer *L, const float *x, int64_t ldx, const float *xsum, float *y, int64_t ldy,
                      int64_t o, const int bits, const int NT) {
    const int C = 16 / bits;
    const int64_t nch = L->nchunks, G = L->groups;
    const qk_block *blk = L->qw + o * L->row_blocks;
    const uint16_t *sc = L->scales + o * G;
    const int32_t *gc = L->group_chunk;
    __m256 acc[4];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    int64_t g = 0, next = gc[1], c = 0;
    __m256 s = _mm256_set1_ps(_cvtsh_ss(sc[0]));
    for (; c < nch; blk++) {
        const __m256i W0 = _mm256_load_si256((const __m256i *)blk->w);
        const __m256i W1 = _mm256_load_si256((const __m256i *)(blk->w + 8));
#pragma GCC unroll 8
        for (int j = 0; j < C; j++) {
            if (c == nch) break;
            while (c == next) {
                g++;
                next = gc[g + 1];
                s = _mm256_set1_ps(_cvtsh_ss(sc[g]));
            }
            const __m256 w0 = _mm256_mul_ps(code_f(W0, 2 * j, bits), s);
            const __m256 w1 = _mm256_mul_ps(code_f(W1, 2 * j, bits), s);
            const __m256 w2 = _mm256_mul_ps(code_f(W0, 2 * j + 1, bits), s);
            const __m256 w3 = _mm256_mul_ps(code_f(W1, 2 * j + 1, bits), s);
            const float *xp = x + c * QK_CHUNK;
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const float *xt = xp + t * ldx;
                acc[t] = _mm256_fmadd_ps(w0, _mm256_load_ps(xt), acc[t]);
                acc[t] = _mm256_fmadd_ps(w1, _mm256_load_ps(xt + 8), acc[t]);
                acc[t] = _mm256_fmadd_ps(w2, _mm256_load_ps(xt + 16), acc[t]);
                acc[t] = _mm256_fmadd_ps(w3, _mm256_load_ps(xt + 24), acc[t]);
            }
            c++;
        }
    }
    __m256 cv[4];
    zero_terms(L, o, xsum, G, NT, cv);
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) y[t * ldy + o] = hsum(_mm256_sub_ps(acc[t], cv[t]));
}

/* Rows per block of the tiled GEMM: the block's weights stay in L2 while every token
 * tile passes over them. */
#define ROW_BLOCK 32

TGT INL void rows_bits(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1, const int bits) {
    const int64_t P = L->in_pad, G = L->groups, out = L->out;
    const int T = a->T;
    if (T == 1) {
        int64_t o = o0;
        for (; o + 2 <= o1; o += 2) gemv_rows(L, a->x, a->xsum, y, o, bits, 2);
        if (o < o1) gemv_rows(L, a->x, a->xsum, y, o, bits, 1);
        return;
    }
    const int tiles = (T + 3) / 4;
    for (int64_t ob = o0; ob < o1; ob += ROW_BLOCK) {
        const int64_t oe = ob + ROW_BLOCK < o1 ? ob + ROW_BLOCK : o1;
        for (int t0 = 0, k = 0; k < tiles; k++) {
            const int n = (T - t0 + (tiles - k) - 1) / (tiles - k); /* balanced tiles of 2..4 tokens */
            const float *x = a->x + t0 * P, *xs = a->xsum + t0 * G;
            float *yt = y + t0 * out;
            for (int64_t o = ob; o < oe; o++) {
                switch (n) {
                case 2: gemm_row(L, x, P, xs, yt, out, o, bits, 2); break;
                case 3: gemm_row(L, x, P, xs, yt, out, o, bits, 3); break;
                default: gemm_row(L, x, P, xs, yt, out, o, bits, 4); break;
                }
            }
            t0 += n;
        }
    }
}

TGT void qk_rows_avx2(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1) {
    switch (L->bits) {
    case 2: rows_bits(L, a, y, o0, o1, 2); break;
    case 3: rows_bits(L, a, y, o0, o1, 3); break;
    case 4: rows_bits(L, a, y, o0, o1, 4); break;
    default: rows_bits(L, a, y, o0, o1, 8); break;
    }
}

TGT INL void dequant_bits(const qk_layer *L, int64_t o0, int64_t o1, float *w, const int bits) {
    const int C = 16 / bits;
    const int64_t G = L->groups, P = L->in_pad;
    for (int64_t o = o0; o < o1; o++) {
        const qk_block *row = L->qw + o * L->row_blocks;
        float *wr = w + (o - o0) * P;
        for (int64_t g = 0; g < G; g++) {
            const __m256 s = _mm256_set1_ps(_cvtsh_ss(L->scales[o * G + g]));
            const __m256 z = _mm256_set1_ps((float)(L->zeros[o * G + g] + L->zero_base));
            for (int64_t c = L->group_chunk[g]; c < L->group_chunk[g + 1]; c++) {
                const __m256i W0 = _mm256_load_si256((const __m256i *)row[c / C].w);
                const __m256i W1 = _mm256_load_si256((const __m256i *)(row[c / C].w + 8));
                const int j = (int)(c % C);
                __m256 v0, v1, v2, v3;
                switch (j) {
#define SLOT(J)                                           \
    case J:                                               \
        v0 = code_exact(W0, (2 * (J)) % (2 * C), bits);     \
        v1 = code_exact(W1, (2 * (J)) % (2 * C), bits);     \
        v2 = code_exact(W0, (2 * (J) + 1) % (2 * C), bits); \
        v3 = code_exact(W1, (2 * (J) + 1) % (2 * C), bits); \
        break;
                    SLOT(0) SLOT(1) SLOT(2) SLOT(3) SLOT(4) SLOT(5) SLOT(6) default : SLOT(7)
#undef SLOT
                }
                float *d = wr + c * QK_CHUNK;
                _mm256_storeu_ps(d, _mm256_mul_ps(_mm256_sub_ps(v0, z), s));
                _mm256_storeu_ps(d + 8, _mm256_mul_ps(_mm256_sub_ps(v1, z), s));
                _mm256_storeu_ps(d + 16, _mm256_mul_ps(_mm256_sub_ps(v2, z), s));
                _mm256_storeu_ps(d + 24, _mm256_mul_ps(_mm256_sub_ps(v3, z), s));
            }
        }
    }
}

TGT void qk_dequant_avx2(const qk_layer *L, int64_t o0, int64_t o1, float *w) {
    switch (L->bits) {
    case 2: dequant_bits(L, o0, o1, w, 2); break;
    case 3: dequant_bits(L, o0, o1, w, 3); break;
    case 4: dequant_bits(L, o0, o1, w, 4); break;
    default: dequant_bits(L, o0, o1, w, 8); break;
    }
}
#endif
