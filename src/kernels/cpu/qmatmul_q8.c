/* The q8 decode GEMV: activations quantized to int8 per block of 128 inputs (one fp32
 * scale each, as llama.cpp quantizes activations for its Q4_0/Q8_0 products), products
 * with the packed codes summed exactly in int32 by AVX-512 VNNI (vpdpbusd: unsigned
 * codes x signed activations), one convert + FMA per 128 inputs.  About 8 vector ops per
 * 64-byte block of 4-bit codes against 24 for the fp32 kernel, which leaves decode bound
 * by memory bandwidth rather than by arithmetic.
 *
 * Where it applies (qk_q8_supported): 4-bit and 8-bit layers whose groups are whole
 * blocks of 128 inputs in kernel order (group size -1 or a multiple of 128, act-order
 * included: its groups are contiguous after the load-time reordering).  A 4-bit qk block
 * holds 4 chunks = 128 inputs; word i, byte j holds input i of chunk j in its low nibble
 * and input 16+i in its high nibble, so one AND (low) or shift+AND (high) yields 64
 * unsigned byte codes whose 4 bytes per word all belong to the same 128-input block.
 * An 8-bit qk block holds 2 chunks: word i, byte k = input 16(k&1)+i of chunk k/2.  The
 * activations are laid out in the same byte order once per call.
 *
 * Error: each activation moves by at most d_b/2 (d_b = max|x| of its block / 127), so
 * |y − exact| <= Σ_i |w_i|·d_b(i)/2 (plus fp32 rounding); tests check that bound. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/qmatmul.h"

#define XB_CHUNKS 4  /* chunks per activation block: 128 inputs */
#define PAR_MIN (1 << 18)
#define PF_ROWS 4 /* software prefetch distance, in rows */

static int decode_mode = -1; /* -1: not read yet; 1: q8 where supported; 0: exact fp32 */

int qk_decode_q8_enabled(void) {
    if (decode_mode < 0) {
        const char *e = getenv("GPTQ_DECODE");
        decode_mode = !(e && strcmp(e, "exact") == 0);
    }
    return decode_mode;
}

void qk_set_decode_q8(int on) { decode_mode = on ? 1 : 0; }

int qk_q8_supported(const qk_layer *L) {
    if (L->bits != 4 && L->bits != 8) return 0;
    if (!cpu_get_features()->avx512vnni) return 0;
    if (L->nchunks % XB_CHUNKS) return 0;
    for (int64_t g = 0; g <= L->groups; g++)
        if (L->group_chunk[g] % XB_CHUNKS) return 0;
    return 1;
}

/* Activations of one call: int8 codes in the byte order of the weight blocks, one scale
 * per 128-input block, and per-group sums of the quantized values. */
typedef struct {
    int8_t *xa;   /* (in_pad) */
    float *d;     /* (nchunks / 4) */
    float *xsum;  /* (groups) Σ of the dequantized activations of each group */
} q8_acts;

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline))

/* Σ_g s_g·z_g·xsum_g of row o: the zero-point term subtracted at the end (16 groups at
 * a time; scales are fp16, zero points small integers). */
TGT INL float zero_term(const qk_layer *L, int64_t o, const float *xsum) {
    const int64_t G = L->groups;
    const uint16_t *sc = L->scales + o * G;
    const uint8_t *zr = L->zeros + o * G;
    const __m512 zb = _mm512_set1_ps((float)L->zero_base);
    __m512 t = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; g += 16) {
        const __mmask16 m = G - g >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (G - g)) - 1u);
        const __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sc + g));
        const __m512 z = _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zr + g))), zb);
        t = _mm512_fmadd_ps(_mm512_mul_ps(s, z), _mm512_maskz_loadu_ps(m, xsum + g), t);
    }
    return _mm512_reduce_add_ps(t);
}

/* Bytes of four int32 vectors (values -127..127) interleaved per 32-bit lane:
 * lane i = a[i] | b[i] << 8 | c[i] << 16 | d[i] << 24. */
TGT INL __m512i interleave4(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ff = _mm512_set1_epi32(0xFF);
    __m512i v = _mm512_and_si512(a, ff);
    v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_and_si512(b, ff), 8));
    v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_and_si512(c, ff), 16));
    return _mm512_or_si512(v, _mm512_slli_epi32(d, 24));
}

/* x (in) -> int8 activations in the weight blocks' byte order, block scales, group sums. */
TGT static void q8_prepare(const qk_layer *L, const float *x, q8_acts *a) {
    const int64_t P = L->in_pad, nb = L->nchunks / XB_CHUNKS;
    float *xk = NULL;
    if (L->perm) { /* act-order: gather into kernel order once */
        xk = xaligned_alloc(sizeof(float) * (size_t)P);
        for (int64_t p = 0; p < P; p++) xk[p] = L->perm[p] >= 0 ? x[L->perm[p]] : 0.0f;
        x = xk;
    }
    int32_t *qs = xmalloc(sizeof(int32_t) * (size_t)nb);
    const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    for (int64_t b = 0; b < nb; b++) {
        __m512 v[8];
        __m512 m = _mm512_setzero_ps();
        for (int k = 0; k < 8; k++) {
            v[k] = _mm512_loadu_ps(x + b * 128 + k * 16);
            m = _mm512_max_ps(m, _mm512_and_ps(v[k], sign));
        }
        const float amax = _mm512_reduce_max_ps(m);
        const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        __m512i q[8], sum = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++) { /* round to nearest even, as nearbyintf */
            q[k] = _mm512_cvtps_epi32(_mm512_mul_ps(v[k], inv));
            sum = _mm512_add_epi32(sum, q[k]);
        }
        a->d[b] = amax / 127.0f;
        qs[b] = _mm512_reduce_add_epi32(sum);
        int8_t *o = a->xa + b * 128;
        if (L->bits == 4) { /* XL lane i, byte j = input 32j + i; XH: 32j + 16 + i */
            _mm512_store_si512(o, interleave4(q[0], q[2], q[4], q[6]));
            _mm512_store_si512(o + 64, interleave4(q[1], q[3], q[5], q[7]));
        } else { /* weight block w, lane i, byte k = input 64w + 32(k/2) + 16(k&1) + i */
            _mm512_store_si512(o, interleave4(q[0], q[1], q[2], q[3]));
            _mm512_store_si512(o + 64, interleave4(q[4], q[5], q[6], q[7]));
        }
    }
    for (int64_t g = 0; g < L->groups; g++) {
        double s = 0;
        for (int64_t b = L->group_chunk[g] / XB_CHUNKS; b < L->group_chunk[g + 1] / XB_CHUNKS; b++) s += (double)a->d[b] * qs[b];
        a->xsum[g] = (float)s;
    }
    free(qs);
    free(xk);
}

TGT INL void q8_rows(const qk_layer *L, const q8_acts *a, float *y, int64_t o, const int bits, const int R) {
    const int64_t nb = L->nchunks / XB_CHUNKS, G = L->groups, rb = L->row_blocks;
    const int wpb = bits == 4 ? 1 : 2; /* weight blocks per activation block */
    const qk_block *blk = L->qw + o * rb;
    const uint16_t *sc = L->scales + o * G;
    const int32_t *gc = L->group_chunk;
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    __m512 acc[4], f[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r] = f[r] = _mm512_setzero_ps();
    int64_t g = 0;
    while (gc[g + 1] == 0 && g + 1 < G) g++; /* leading empty groups */
    for (int64_t b = 0; b < nb; b++, blk += wpb) {
        const __m512i X0 = _mm512_load_si512(a->xa + b * 128), X1 = _mm512_load_si512(a->xa + b * 128 + 64);
        const __m512 d = _mm512_set1_ps(a->d[b]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512i is;
            if (bits == 4) {
                const __m512i W = _mm512_load_si512(blk[r * rb].w);
                _mm_prefetch((const char *)blk[(r + PF_ROWS) * rb].w, _MM_HINT_T0);
                is = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(W, m0f), X0);
                is = _mm512_dpbusd_epi32(is, _mm512_and_si512(_mm512_srli_epi32(W, 4), m0f), X1);
            } else {
                const __m512i W0 = _mm512_load_si512(blk[r * rb].w), W1 = _mm512_load_si512(blk[r * rb + 1].w);
                _mm_prefetch((const char *)blk[(r + PF_ROWS) * rb].w, _MM_HINT_T0);
                _mm_prefetch((const char *)blk[(r + PF_ROWS) * rb + 1].w, _MM_HINT_T0);
                is = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W0, X0);
                is = _mm512_dpbusd_epi32(is, W1, X1);
            }
            f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), d, f[r]);
        }
        if ((b + 1) * XB_CHUNKS == gc[g + 1]) { /* group g ends here: apply its scales */
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(sc[r * G + g])), f[r], acc[r]);
                f[r] = _mm512_setzero_ps();
            }
            g++;
            while (g + 1 < G && gc[g + 1] == gc[g]) g++; /* empty groups */
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) y[o + r] = _mm512_reduce_add_ps(acc[r]) - zero_term(L, o + r, a->xsum);
}

TGT static void q8_range(const qk_layer *L, const q8_acts *a, float *y, int64_t o0, int64_t o1) {
    int64_t o = o0;
    if (L->bits == 4) {
        for (; o < o1; o++) q8_rows(L, a, y, o, 4, 1);
    } else {
        for (; o + 4 <= o1; o += 4) q8_rows(L, a, y, o, 8, 4);
        for (; o < o1; o++) q8_rows(L, a, y, o, 8, 1);
    }
}
#else
static void q8_prepare(const qk_layer *L, const float *x, q8_acts *a) { (void)L, (void)x, (void)a; }
static void q8_range(const qk_layer *L, const q8_acts *a, float *y, int64_t o0, int64_t o1) {
    (void)L, (void)a, (void)y, (void)o0, (void)o1;
}
#endif

void qk_gemv_q8(const qk_layer *L, float *y, const float *x) {
    q8_acts a;
    a.xa = xaligned_alloc((size_t)L->in_pad);
    a.d = xmalloc(sizeof(float) * (size_t)(L->nchunks / XB_CHUNKS));
    a.xsum = xmalloc(sizeof(float) * (size_t)L->groups);
    q8_prepare(L, x, &a);
    const int64_t out = L->out;
#pragma omp parallel if (out * L->in_pad > PAR_MIN)
    {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t o0 = out * id / nt, o1 = out * (id + 1) / nt;
        if (o1 > o0) q8_range(L, &a, y, o0, o1);
    }
    free(a.xsum);
    free(a.d);
    free(a.xa);
}

/* Whether two layers read their input the same way (same bits, positions, groups and
 * permutation), so one q8_prepare serves both. */
static int same_input_layout(const qk_layer *a, const qk_layer *b) {
    if (a->bits != b->bits || a->in != b->in || a->in_pad != b->in_pad || a->nchunks != b->nchunks || a->groups != b->groups)
        return 0;
    if (memcmp(a->group_chunk, b->group_chunk, sizeof(int32_t) * (size_t)(a->groups + 1))) return 0;
    if (!a->perm || !b->perm) return !a->perm && !b->perm;
    return memcmp(a->perm, b->perm, sizeof(int32_t) * (size_t)a->in_pad) == 0;
}

int qk_gemv_q8_multi(const qk_layer *const *L, float *const *y, int n, const float *x) {
    if (n <= 0 || n > QK_MULTI_MAX) return 0;
    for (int i = 0; i < n; i++)
        if (!qk_q8_supported(L[i]) || !same_input_layout(L[0], L[i])) return 0;
    q8_acts a;
    a.xa = xaligned_alloc((size_t)L[0]->in_pad);
    a.d = xmalloc(sizeof(float) * (size_t)(L[0]->nchunks / XB_CHUNKS));
    a.xsum = xmalloc(sizeof(float) * (size_t)L[0]->groups);
    q8_prepare(L[0], x, &a);
    /* One parallel region over the rows of all the layers end to end: each thread streams
     * one contiguous stretch, and there is one barrier instead of n. */
    int64_t first[QK_MULTI_MAX + 1];
    first[0] = 0;
    for (int i = 0; i < n; i++) first[i + 1] = first[i] + L[i]->out;
    const int64_t total = first[n];
#pragma omp parallel if (total * L[0]->in_pad > PAR_MIN)
    {
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t r0 = total * id / nt, r1 = total * (id + 1) / nt;
        for (int i = 0; i < n; i++) {
            const int64_t o0 = (r0 > first[i] ? r0 : first[i]) - first[i], o1 = (r1 < first[i + 1] ? r1 : first[i + 1]) - first[i];
            if (o1 > o0) q8_range(L[i], &a, y[i], o0, o1);
        }
    }
    free(a.xsum);
    free(a.d);
    free(a.xa);
    return 1;
}
