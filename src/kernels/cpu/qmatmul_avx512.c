/* AVX-512 (F/BW/VL/DQ) kernels over the qk layout (qtypes.h): the decode GEMV, the tiled
 * GEMM for a few tokens, and row dequantization for the sgemm path.  A block is one zmm
 * register; code index k of all 16 words is one AND (or the top code one shift) away, its
 * 16 inputs are consecutive, and the activations come pre-scaled by xfac so the masked,
 * unshifted code·2^(k·bits) converts straight to an exact fp32 product.
 * Compiled for the generic target; every function opts in with a target attribute. */
#include "kernels/cpu/qmatmul_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline))
#define QK_PF 8 /* blocks ahead to prefetch in each row stream (512 bytes) */

/* Code index k of all 16 words of block W as floats: code·2^(k·bits) (AND), or the code
 * itself for the top code of a full word (shift). */
TGT INL __m512 code_f(__m512i W, const int k, const int bits) {
    if ((k + 1) * bits == 32) return _mm512_cvtepi32_ps(_mm512_srli_epi32(W, 32 - bits));
    return _mm512_cvtepi32_ps(_mm512_and_si512(W, _mm512_set1_epi32(((1 << bits) - 1) << (k * bits))));
}

/* The exact code k of all 16 words (for dequantization). */
TGT INL __m512 code_exact(__m512i W, const int k, const int bits) {
    __m512i v = k ? _mm512_srli_epi32(W, k * bits) : W;
    if ((k + 1) * bits != 32) v = _mm512_and_si512(v, _mm512_set1_epi32((1 << bits) - 1));
    return _mm512_cvtepi32_ps(v);
}

/* Σ_g s_g·z_g·xsum[g] over all groups of row o, as a vector to subtract before the final
 * reduction.  xsum has `ntok` rows `ldxs` apart; cv[t] receives token t's sum. */
TGT INL void zero_terms(const qk_layer *L, int64_t o, const float *xsum, int64_t ldxs, const int ntok, __m512 *cv) {
    const int64_t G = L->groups;
    const uint16_t *sc = L->scales + o * G;
    const uint8_t *zr = L->zeros + o * G;
    const __m512 zb = _mm512_set1_ps((float)L->zero_base);
    for (int t = 0; t < ntok; t++) cv[t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; g += 16) {
        const __mmask16 m = G - g >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (G - g)) - 1u);
        const __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sc + g));
        const __m512 z = _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zr + g))), zb);
        const __m512 sz = _mm512_mul_ps(s, z); /* exact: fp16 times an integer <= 256 */
#pragma GCC unroll 8
        for (int t = 0; t < ntok; t++) cv[t] = _mm512_fmadd_ps(sz, _mm512_maskz_loadu_ps(m, xsum + t * ldxs + g), cv[t]);
    }
}

/* y[o .. o+R) for one token: Σ_g s_g·dot(code, x)_g − Σ_g s_g·z_g·Σx_g.  R rows at once
 * share every activation load (x stays in L1/L2 once instead of R times) and give 2R
 * independent FMA chains.  All rows have the same group structure. */
TGT INL void gemv_rows(const qk_layer *L, const float *x, const float *xsum, float *y, int64_t o, const int bits,
                       const int R) {
    const int C = 16 / bits;
    const int64_t nch = L->nchunks, G = L->groups, rb = L->row_blocks;
    const qk_block *blk = L->qw + o * rb;
    const uint16_t *sc = L->scales + o * G;
    const int32_t *gc = L->group_chunk;
    __m512 acc[4], d0[4], d1[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r] = d0[r] = d1[r] = _mm512_setzero_ps();
    int64_t g = 0, next = gc[1], c = 0;
    for (; c < nch; blk++) {
        __m512i W[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            W[r] = _mm512_load_si512(blk[r * rb].w);
            _mm_prefetch((const char *)blk[r * rb + QK_PF].w, _MM_HINT_T0);
        }
#pragma GCC unroll 8
        for (int j = 0; j < C; j++) {
            if (c == nch) break;
            while (c == next) { /* group g ends: apply its scales */
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(sc[r * G + g])), _mm512_add_ps(d0[r], d1[r]), acc[r]);
                    d0[r] = d1[r] = _mm512_setzero_ps();
                }
                g++;
                next = gc[g + 1];
            }
            const __m512 x0 = _mm512_load_ps(x + c * QK_CHUNK), x1 = _mm512_load_ps(x + c * QK_CHUNK + QK_HALF);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                d0[r] = _mm512_fmadd_ps(code_f(W[r], 2 * j, bits), x0, d0[r]);
                d1[r] = _mm512_fmadd_ps(code_f(W[r], 2 * j + 1, bits), x1, d1[r]);
            }
            c++;
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) { /* the last group; any later ones are empty */
        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(sc[r * G + g])), _mm512_add_ps(d0[r], d1[r]), acc[r]);
        __m512 cv;
        zero_terms(L, o + r, xsum, G, 1, &cv);
        y[o + r] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[r], cv));
    }
}

/* y[t][o], y[t][o2] for NT tokens (x rows ldx apart, y rows ldy apart) and the two rows o
 * and o2 (o2 == o for a lone last row): each chunk is unpacked and scaled once per row,
 * and each activation load serves both rows. */
TGT INL void gemm_rows(const qk_layer *L, const float *x, int64_t ldx, const float *xsum, float *y, int64_t ldy,
                       int64_t o, int64_t o2, const int bits, const int NT) {
    const int C = 16 / bits;
    const int64_t nch = L->nchunks, G = L->groups;
    const qk_block *b0 = L->qw + o * L->row_blocks, *b1 = L->qw + o2 * L->row_blocks;
    const uint16_t *sc0 = L->scales + o * G, *sc1 = L->scales + o2 * G;
    const int32_t *gc = L->group_chunk;
    __m512 acc0[8], acc1[8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) acc0[t] = acc1[t] = _mm512_setzero_ps();
    int64_t g = 0, next = gc[1], c = 0;
    __m512 s0 = _mm512_set1_ps(_cvtsh_ss(sc0[0])), s1 = _mm512_set1_ps(_cvtsh_ss(sc1[0]));
    for (; c < nch; b0++, b1++) {
        const __m512i W0 = _mm512_load_si512(b0->w), W1 = _mm512_load_si512(b1->w);
#pragma GCC unroll 8
        for (int j = 0; j < C; j++) {
            if (c == nch) break;
            while (c == next) {
                g++;
                next = gc[g + 1];
                s0 = _mm512_set1_ps(_cvtsh_ss(sc0[g]));
                s1 = _mm512_set1_ps(_cvtsh_ss(sc1[g]));
            }
            const __m512 w00 = _mm512_mul_ps(code_f(W0, 2 * j, bits), s0);
            const __m512 w01 = _mm512_mul_ps(code_f(W0, 2 * j + 1, bits), s0);
            const __m512 w10 = _mm512_mul_ps(code_f(W1, 2 * j, bits), s1);
            const __m512 w11 = _mm512_mul_ps(code_f(W1, 2 * j + 1, bits), s1);
            const float *xp = x + c * QK_CHUNK;
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const __m512 x0 = _mm512_load_ps(xp + t * ldx), x1 = _mm512_load_ps(xp + t * ldx + QK_HALF);
                acc0[t] = _mm512_fmadd_ps(w00, x0, acc0[t]);
                acc1[t] = _mm512_fmadd_ps(w10, x0, acc1[t]);
                acc0[t] = _mm512_fmadd_ps(w01, x1, acc0[t]);
                acc1[t] = _mm512_fmadd_ps(w11, x1, acc1[t]);
            }
            c++;
        }
    }
    __m512 cv[8];
    zero_terms(L, o, xsum, G, NT, cv);
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) y[t * ldy + o] = _mm512_reduce_add_ps(_mm512_sub_ps(acc0[t], cv[t]));
    zero_terms(L, o2, xsum, G, NT, cv);
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) y[t * ldy + o2] = _mm512_reduce_add_ps(_mm512_sub_ps(acc1[t], cv[t]));
}

/* Rows per block of the tiled GEMM: the block's weights stay in L2 while every token
 * tile passes over them. */
#define ROW_BLOCK 32

TGT INL void rows_bits(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1, const int bits) {
    const int64_t P = L->in_pad, G = L->groups, out = L->out;
    const int T = a->T;
    if (T == 1) {
        int64_t o = o0;
        for (; o + 4 <= o1; o += 4) gemv_rows(L, a->x, a->xsum, y, o, bits, 4);
        switch (o1 - o) {
        case 3: gemv_rows(L, a->x, a->xsum, y, o, bits, 3); break;
        case 2: gemv_rows(L, a->x, a->xsum, y, o, bits, 2); break;
        case 1: gemv_rows(L, a->x, a->xsum, y, o, bits, 1); break;
        }
        return;
    }
    const int tiles = (T + 7) / 8;
    for (int64_t ob = o0; ob < o1; ob += ROW_BLOCK) {
        const int64_t oe = ob + ROW_BLOCK < o1 ? ob + ROW_BLOCK : o1;
        for (int t0 = 0, k = 0; k < tiles; k++) {
            const int n = (T - t0 + (tiles - k) - 1) / (tiles - k); /* balanced tiles of 2..8 tokens */
            const float *x = a->x + t0 * P, *xs = a->xsum + t0 * G;
            float *yt = y + t0 * out;
            for (int64_t o = ob; o < oe; o += 2) {
                const int64_t o2 = o + 1 < oe ? o + 1 : o;
                switch (n) {
                case 2: gemm_rows(L, x, P, xs, yt, out, o, o2, bits, 2); break;
                case 3: gemm_rows(L, x, P, xs, yt, out, o, o2, bits, 3); break;
                case 4: gemm_rows(L, x, P, xs, yt, out, o, o2, bits, 4); break;
                case 5: gemm_rows(L, x, P, xs, yt, out, o, o2, bits, 5); break;
                case 6: gemm_rows(L, x, P, xs, yt, out, o, o2, bits, 6); break;
                case 7: gemm_rows(L, x, P, xs, yt, out, o, o2, bits, 7); break;
                default: gemm_rows(L, x, P, xs, yt, out, o, o2, bits, 8); break;
                }
            }
            t0 += n;
        }
    }
}

TGT void qk_rows_avx512(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1) {
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
            const __m512 s = _mm512_set1_ps(_cvtsh_ss(L->scales[o * G + g]));
            const __m512 z = _mm512_set1_ps((float)(L->zeros[o * G + g] + L->zero_base));
            for (int64_t c = L->group_chunk[g]; c < L->group_chunk[g + 1]; c++) {
                const __m512i W = _mm512_load_si512(row[c / C].w);
                const int j = (int)(c % C);
                __m512 v0, v1;
                switch (j) { /* constant shifts per slot */
#define SLOT(J)                                          \
    case J:                                              \
        v0 = code_exact(W, (2 * (J)) % (2 * C), bits);     \
        v1 = code_exact(W, (2 * (J) + 1) % (2 * C), bits); \
        break;
                    SLOT(0) SLOT(1) SLOT(2) SLOT(3) SLOT(4) SLOT(5) SLOT(6) default : SLOT(7)
#undef SLOT
                }
                _mm512_storeu_ps(wr + c * QK_CHUNK, _mm512_mul_ps(_mm512_sub_ps(v0, z), s));
                _mm512_storeu_ps(wr + c * QK_CHUNK + QK_HALF, _mm512_mul_ps(_mm512_sub_ps(v1, z), s));
            }
        }
    }
}

TGT void qk_dequant_avx512(const qk_layer *L, int64_t o0, int64_t o1, float *w) {
    switch (L->bits) {
    case 2: dequant_bits(L, o0, o1, w, 2); break;
    case 3: dequant_bits(L, o0, o1, w, 3); break;
    case 4: dequant_bits(L, o0, o1, w, 4); break;
    default: dequant_bits(L, o0, o1, w, 8); break;
    }
}
#endif
