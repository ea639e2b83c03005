/* Tests of the fused dequantizing CPU kernels (src/kernels/cpu/qmatmul.h, layout in
 * qtypes.h): the oracle against gptq_dequantize() + a plain matmul, repacking from
 * checkpoint tensors against repacking from codes, dequantized rows, and every path
 * (scalar, AVX2, AVX-512; GEMV, tiled GEMM, dequantize + sgemm) against the oracle on
 * random layers: 2/3/4/8 bits, monotonic / act-order / arbitrary g_idx, sym / asym,
 * v1 / v2 zero points, T = 1, 3, 17, 64.
 * GPTQ_BENCH=1 also times a 4-bit g128 GEMV (11008x4096 and 4096x11008) on 1 and 2
 * threads against the dense bf16 GEMV of kernels/cpu/dense.c, and T = 4..64 products
 * (GPTQ_BENCH=gemv: the GEMVs only). */
#include <limits.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dense.h"
#include "kernels/cpu/qmatmul.h"
#include "quant/pack.h"

/* ---- helpers ---- */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t next_u64(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static int irand(int n) { return (int)((next_u64() >> 33) % (uint64_t)n); }
static double urand(void) { return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0; }
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

enum { ORDER_MONO, ORDER_ACT, ORDER_RANDOM };
static const char *order_name[] = {"monotonic", "act-order", "random-g_idx"};

typedef struct {
    int64_t out, in;
    int bits, group_size, order, sym, v2;
} layer_case;

/* A random quantized layer: codes, fp16 scales, zero points valid for the case's
 * convention (v1: 1..maxq+1, v2: 0..maxq; sym: 2^(bits-1)), and g_idx. */
static void make_layer(const layer_case *lc, quant_layer *q) {
    quant_layer_alloc(q, lc->out, lc->in, lc->bits, lc->group_size, 0);
    const int maxq = quant_maxq(lc->bits);
    const int64_t out = lc->out, in = lc->in, G = q->groups;
    for (int64_t k = 0; k < out * in; k++) q->codes[k] = (uint8_t)irand(maxq + 1);
    for (int64_t k = 0; k < G * out; k++) {
        q->scales[k] = f16_to_f32(f32_to_f16((float)(0.002 + 0.05 * urand())));
        q->zeros[k] = lc->sym ? (maxq + 1) / 2 : lc->v2 ? irand(maxq + 1) : 1 + irand(maxq + 1);
    }
    int64_t gs = lc->group_size <= 0 ? in : lc->group_size;
    if (lc->order == ORDER_RANDOM) {
        for (int64_t i = 0; i < in; i++) q->g_idx[i] = irand((int)G);
        return;
    }
    for (int64_t i = 0; i < in; i++) q->g_idx[i] = (int32_t)(i / gs);
    if (lc->order == ORDER_ACT) /* g_idx[perm[i]] = i / gs for a random permutation */
        for (int64_t i = in - 1; i > 0; i--) {
            int64_t j = irand((int)i + 1);
            int32_t t = q->g_idx[i];
            q->g_idx[i] = q->g_idx[j];
            q->g_idx[j] = t;
        }
}

static int packable(const layer_case *lc) { return (lc->out * lc->bits) % 32 == 0; }

/* Checkpoint tensors of q in the case's zero convention (v2 stores the zero itself). */
static void make_packed(const quant_layer *q, int v2, gptq_packed *pk) {
    memset(pk, 0, sizeof *pk);
    pk->out = q->out;
    pk->in = q->in;
    pk->groups = q->groups;
    pk->bits = q->bits;
    pk->group_size = q->group_size;
    pk->qweight = xmalloc(sizeof(int32_t) * (size_t)(q->in * q->bits / 32 * q->out));
    pk->qzeros = xmalloc(sizeof(int32_t) * (size_t)(q->groups * q->out * q->bits / 32));
    pk->scales = xmalloc(sizeof(uint16_t) * (size_t)(q->groups * q->out));
    pk->g_idx = xmalloc(sizeof(int32_t) * (size_t)q->in);
    int rc = gptq_pack_qweight(q->codes, q->out, q->in, q->bits, pk->qweight);
    int32_t *z = xmalloc(sizeof(int32_t) * (size_t)(q->groups * q->out));
    for (int64_t k = 0; k < q->groups * q->out; k++) z[k] = q->zeros[k] + (v2 ? 1 : 0); /* packer stores z - 1 */
    rc |= gptq_pack_qzeros(z, q->groups, q->out, q->bits, pk->qzeros);
    free(z);
    for (int64_t k = 0; k < q->groups * q->out; k++) pk->scales[k] = f32_to_f16(q->scales[k]);
    memcpy(pk->g_idx, q->g_idx, sizeof(int32_t) * (size_t)q->in);
    CHECK(rc == 0, "packing the random layer: %s", gptq_last_error());
}

/* The oracle from the quant_layer (for any out): fp32 weights s·(q − z), fp64 sums; also
 * the magnitude Σ|s|·(q + |z|)·|x| of each output's terms. */
static void oracle(const quant_layer *q, const float *x, int T, float *y, double *mag) {
    for (int t = 0; t < T; t++)
        for (int64_t o = 0; o < q->out; o++) {
            double acc = 0, m = 0;
            for (int64_t i = 0; i < q->in; i++) {
                int64_t g = q->g_idx[i];
                float s = q->scales[g * q->out + o], z = (float)q->zeros[g * q->out + o];
                float w = s * ((float)q->codes[o * q->in + i] - z);
                acc += (double)w * x[t * q->in + i];
                m += fabs(s) * ((double)q->codes[o * q->in + i] + fabs(z)) * fabs(x[t * q->in + i]);
            }
            y[t * q->out + o] = (float)acc;
            if (mag) mag[t * q->out + o] = m;
        }
}

static float *random_x(int64_t n) {
    float *x = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = nrand() * (irand(50) == 0 ? 20.0f : 1.0f); /* a few outliers */
    return x;
}

static double worst_rel; /* largest normwise relative error seen */

/* y against yref: normwise ‖y − yref‖∞ / ‖yref‖∞ <= 1e-5 and per element
 * |y − yref| <= 1e-5 · (Σ of term magnitudes). */
static void compare(const float *y, const float *yref, const double *mag, int64_t n, const char *what) {
    double maxd = 0, maxr = 0;
    int64_t bad = -1;
    for (int64_t k = 0; k < n; k++) {
        double d = fabs((double)y[k] - yref[k]);
        if (!(d <= 1e-5 * mag[k] + 1e-30) && bad < 0) bad = k;
        if (!(d <= maxd)) maxd = d;
        if (fabs(yref[k]) > maxr) maxr = fabs(yref[k]);
    }
    double rel = maxr > 0 ? maxd / maxr : maxd;
    if (rel > worst_rel) worst_rel = rel;
    CHECK(rel <= 1e-5, "%s: normwise relative error %.3g", what, rel);
    CHECK(bad < 0, "%s: element %lld: %.9g vs %.9g (term magnitude %.3g)", what, (long long)bad,
          bad < 0 ? 0.0 : (double)y[bad], bad < 0 ? 0.0 : (double)yref[bad], bad < 0 ? 0.0 : mag[bad]);
}

static int layers_equal(const qk_layer *a, const qk_layer *b) {
    if (a->out != b->out || a->in != b->in || a->in_pad != b->in_pad || a->groups != b->groups ||
        a->row_blocks != b->row_blocks || a->bits != b->bits || !a->perm != !b->perm)
        return 0;
    for (int64_t k = 0; k < a->out * a->groups; k++) /* the real zero points (zero_base may differ) */
        if (a->zeros[k] + a->zero_base != b->zeros[k] + b->zero_base) return 0;
    if (memcmp(a->qw, b->qw, sizeof(qk_block) * (size_t)(a->out * a->row_blocks))) return 0;
    if (memcmp(a->scales, b->scales, sizeof(uint16_t) * (size_t)(a->out * a->groups))) return 0;
    if (memcmp(a->group_chunk, b->group_chunk, sizeof(int32_t) * (size_t)(a->groups + 1))) return 0;
    if (a->perm && memcmp(a->perm, b->perm, sizeof(int32_t) * (size_t)a->in_pad)) return 0;
    return 1;
}

static const qk_path paths[] = {QK_PATH_SCALAR, QK_PATH_AVX2, QK_PATH_AVX512};
static int cases_run, products_run;

/* ---- one random layer through everything ---- */

static void run_case(const layer_case *lc) {
    char name[160];
    snprintf(name, sizeof name, "%lldx%lld %d-bit g%d %s %s %s", (long long)lc->out, (long long)lc->in, lc->bits,
             lc->group_size, order_name[lc->order], lc->sym ? "sym" : "asym", lc->v2 ? "v2" : "v1");
    quant_layer q;
    make_layer(lc, &q);
    const int Tmax = 64;
    float *x = random_x(Tmax * lc->in);
    float *yref = xmalloc(sizeof(float) * (size_t)(Tmax * lc->out)), *y = xmalloc(sizeof(float) * (size_t)(Tmax * lc->out));
    double *mag = xmalloc(sizeof(double) * (size_t)(Tmax * lc->out));
    oracle(&q, x, Tmax, yref, mag);

    qk_layer L;
    int rc = qk_from_quant(&q, &L);
    CHECK(rc == 0, "%s: qk_from_quant: %s", name, gptq_last_error());
    if (rc) goto done;
    { /* the order is the identity iff g_idx is non-decreasing and every group has a multiple of 32 inputs */
        int identity = 1;
        int64_t *cnt = xcalloc((size_t)q.groups, sizeof(int64_t));
        for (int64_t i = 0; i < lc->in; i++) {
            cnt[q.g_idx[i]]++;
            identity &= i == 0 || q.g_idx[i] >= q.g_idx[i - 1];
        }
        for (int64_t g = 0; g < q.groups; g++) identity &= cnt[g] % 32 == 0;
        free(cnt);
        CHECK(L.act_order == !identity && (L.perm == NULL) == identity, "%s: act_order flag %d", name, L.act_order);
    }

    if (packable(lc)) {
        gptq_packed pk;
        make_packed(&q, lc->v2, &pk);
        /* the oracle from the checkpoint tensors equals ours, and for v1 gptq_dequantize + matmul */
        float *yr2 = xmalloc(sizeof(float) * (size_t)(Tmax * lc->out));
        rc = qk_matmul_ref(pk.qweight, pk.qzeros, pk.scales, pk.g_idx, lc->out, lc->in, q.groups, lc->bits, lc->group_size,
                           lc->v2, yr2, x, Tmax);
        CHECK(rc == 0 && memcmp(yr2, yref, sizeof(float) * (size_t)(Tmax * lc->out)) == 0,
              "%s: qk_matmul_ref differs from the quant_layer oracle", name);
        if (!lc->v2) {
            float *w = xmalloc(sizeof(float) * (size_t)(lc->out * lc->in));
            rc = gptq_dequantize(pk.qweight, pk.qzeros, pk.scales, pk.g_idx, lc->out, lc->in, q.groups, lc->bits, w);
            int same = rc == 0;
            for (int t = 0; t < Tmax && same; t++)
                for (int64_t o = 0; o < lc->out; o++) {
                    double acc = 0;
                    for (int64_t i = 0; i < lc->in; i++) acc += (double)w[o * lc->in + i] * x[t * lc->in + i];
                    same &= (float)acc == yr2[t * lc->out + o];
                }
            CHECK(same, "%s: qk_matmul_ref differs from gptq_dequantize + matmul", name);
            free(w);
        }
        free(yr2);
        /* repacking from checkpoint tensors = repacking from codes */
        qk_layer L2;
        rc = qk_from_gptq(pk.qweight, pk.qzeros, pk.scales, pk.g_idx, lc->out, lc->in, q.groups, lc->bits,
                          lc->group_size, lc->v2, &L2);
        CHECK(rc == 0, "%s: qk_from_gptq: %s", name, gptq_last_error());
        if (rc == 0) {
            CHECK(layers_equal(&L, &L2), "%s: qk_from_gptq != qk_from_quant", name);
            CHECK(L2.zero_base == (lc->v2 ? 0 : 1), "%s: zero_base %d", name, L2.zero_base);
            float *y2 = xmalloc(sizeof(float) * (size_t)lc->out);
            qk_matmul_ex(&L2, y2, x, 1, QK_PATH_AUTO, 0);
            compare(y2, yref, mag, lc->out, name);
            free(y2);
            qk_free(&L2);
        }
        if (lc->order == ORDER_MONO) { /* g_idx NULL with group_size */
            rc = qk_from_gptq(pk.qweight, pk.qzeros, pk.scales, NULL, lc->out, lc->in, q.groups, lc->bits,
                              lc->group_size, lc->v2, &L2);
            CHECK(rc == 0 && layers_equal(&L, &L2), "%s: g_idx NULL repack differs", name);
            if (rc == 0) qk_free(&L2);
        }
        gptq_packed_free(&pk);
    }

    /* dequantized rows, every path: exact, in kernel order */
    {
        float *wk = xmalloc(sizeof(float) * (size_t)(lc->out * L.in_pad));
        for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
            if (!qk_path_supported(paths[pi])) continue;
            memset(wk, 0, sizeof(float) * (size_t)(lc->out * L.in_pad));
            qk_dequant_rows(&L, 0, lc->out, wk, paths[pi]);
            int same = 1;
            for (int64_t o = 0; o < lc->out && same; o++)
                for (int64_t p = 0; p < L.in_pad; p++) {
                    int64_t i = L.perm ? L.perm[p] : p;
                    if (i < 0) continue;
                    int64_t g = q.g_idx[i];
                    float w = q.scales[g * lc->out + o] * ((float)q.codes[o * lc->in + i] - (float)q.zeros[g * lc->out + o]);
                    same &= wk[o * L.in_pad + p] == w;
                }
            CHECK(same, "%s: dequantized rows (%s) differ", name, qk_path_name(paths[pi]));
        }
        free(wk);
    }

    /* products: every path, GEMV / tiled GEMM / sgemm */
    static const struct {
        int T, blas_min_t;
    } runs[] = {{1, 0}, {3, 0}, {17, 0}, {64, 0}, {64, INT_MAX}, {64, 1}, {3, 1}};
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
        if (!qk_path_supported(paths[pi])) continue;
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            char what[256];
            snprintf(what, sizeof what, "%s, %s, T=%d%s", name, qk_path_name(paths[pi]), runs[r].T,
                     runs[r].T >= (runs[r].blas_min_t ? runs[r].blas_min_t : qk_blas_min_t(paths[pi])) ? " (sgemm)" : "");
            for (int64_t k = 0; k < runs[r].T * lc->out; k++) y[k] = NAN;
            qk_matmul_ex(&L, y, x, runs[r].T, paths[pi], runs[r].blas_min_t);
            compare(y, yref, mag, runs[r].T * lc->out, what);
            products_run++;
        }
    }
    qk_free(&L);
done:
    cases_run++;
    quant_layer_free(&q);
    free(x);
    free(y);
    free(yref);
    free(mag);
}

static void test_random_layers(void) {
    static const int bits_list[] = {2, 3, 4, 8};
    static const int gs_list[] = {32, 64, 128, -1, 96, 48, 40};
    static const int64_t in_list[] = {32, 96, 128, 256, 320, 512};
    for (size_t b = 0; b < 4; b++) {
        const int bits = bits_list[b];
        for (int n = 0; n < 12; n++) {
            layer_case lc;
            lc.bits = bits;
            lc.in = in_list[irand(6)];
            lc.group_size = gs_list[irand(7)];
            lc.order = n % 3;
            lc.sym = n % 4 == 1;
            lc.v2 = n % 2;
            /* every other case a packable out (qzeros need out·bits % 32 == 0), else arbitrary */
            const int64_t unit = 32 / (bits == 3 ? 1 : bits);
            lc.out = n % 2 ? unit * (1 + irand(4)) : 1 + irand(70);
            run_case(&lc);
        }
    }
    /* fixed corners: one output, one chunk, whole-row group, short last group */
    layer_case corners[] = {
        {1, 32, 4, -1, ORDER_MONO, 0, 0},   {5, 64, 2, 32, ORDER_ACT, 0, 1},  {32, 160, 3, 64, ORDER_MONO, 0, 0},
        {17, 224, 4, 128, ORDER_MONO, 1, 0}, {8, 96, 8, 40, ORDER_ACT, 0, 0}, {40, 288, 3, 128, ORDER_ACT, 0, 1},
        /* more than 16 groups (the AVX-512 zero terms take 16 at a time) */
        {67, 1024, 4, 32, ORDER_ACT, 0, 1}, {64, 1536, 2, 48, ORDER_RANDOM, 0, 0}, {35, 1088, 8, 64, ORDER_MONO, 1, 1},
    };
    for (size_t k = 0; k < sizeof corners / sizeof corners[0]; k++) run_case(&corners[k]);
    printf("%d layers, %d products checked; worst normwise relative error %.3g\n", cases_run, products_run, worst_rel);
}

/* The q8 decode GEMV against the oracle, within its stated bound: each activation moves
 * by at most d_b/2, so |y − exact| <= Σ_i |w_i|·d_b(i)/2 (+ fp32 rounding). */
static void test_q8_decode(void) {
    static const int gs_list[] = {128, -1, 256, 384};
    static const int64_t in_list[] = {128, 256, 768, 1152};
    int run = 0;
    for (int n = 0; n < 24; n++) {
        layer_case lc = {0};
        lc.bits = n % 2 ? 8 : 4;
        lc.group_size = gs_list[irand(4)];
        do lc.in = in_list[irand(4)];
        while (lc.group_size > 0 && lc.in % lc.group_size);
        lc.order = n % 3 == 2 ? ORDER_ACT : ORDER_MONO;
        lc.sym = n % 4 == 1;
        lc.out = 1 + irand(70);
        quant_layer q;
        make_layer(&lc, &q);
        qk_layer L;
        CHECK(qk_from_quant(&q, &L) == 0, "q8: qk_from_quant: %s", gptq_last_error());
        const int vnni = cpu_get_features()->avx512vnni;
        CHECK(qk_q8_supported(&L) == vnni, "q8: supported(%d-bit g%d) = %d with VNNI %d", lc.bits, lc.group_size,
              qk_q8_supported(&L), vnni);
        if (!vnni) {
            qk_free(&L);
            quant_layer_free(&q);
            continue;
        }
        float *x = random_x(lc.in), *y = xmalloc(sizeof(float) * lc.out), *yref = xmalloc(sizeof(float) * lc.out),
              *y2 = xmalloc(sizeof(float) * lc.out);
        double *mag = xmalloc(sizeof(double) * lc.out);
        oracle(&q, x, 1, yref, mag);
        qk_gemv_q8(&L, y, x);
        /* block scale of each input: its position in kernel order / 128 */
        float *dpos = xmalloc(sizeof(float) * lc.in);
        for (int64_t p = 0; p < L.in_pad; p += 128) {
            float amax = 0;
            for (int64_t k = p; k < p + 128; k++) {
                int64_t i = L.perm ? L.perm[k] : k;
                if (i >= 0) amax = fmaxf(amax, fabsf(x[i]));
            }
            for (int64_t k = p; k < p + 128; k++) {
                int64_t i = L.perm ? L.perm[k] : k;
                if (i >= 0) dpos[i] = amax / 127.0f;
            }
        }
        int64_t bad = -1;
        double worst = 0;
        for (int64_t o = 0; o < lc.out; o++) {
            double bound = 1e-5 * mag[o];
            for (int64_t i = 0; i < lc.in; i++) {
                int64_t g = q.g_idx[i];
                double w = q.scales[g * q.out + o] * ((double)q.codes[o * q.in + i] - q.zeros[g * q.out + o]);
                bound += fabs(w) * dpos[i] * 0.5;
            }
            double d = fabs((double)y[o] - yref[o]);
            if (d / bound > worst) worst = d / bound;
            if (!(d <= bound) && bad < 0) bad = o;
        }
        CHECK(bad < 0, "q8 %d-bit g%d %s in %lld: output %lld off by more than the bound (worst %.3g of it)", lc.bits,
              lc.group_size, order_name[lc.order], (long long)lc.in, (long long)bad, worst);
        /* qk_matmul takes the q8 path for one token when enabled, the exact one when not */
        qk_matmul(&L, y2, x, 1);
        CHECK(memcmp(y, y2, sizeof(float) * lc.out) == 0, "q8: qk_matmul(T=1) is the q8 GEMV");
        qk_set_decode_q8(0);
        qk_matmul(&L, y2, x, 1);
        qk_set_decode_q8(1);
        compare(y2, yref, mag, lc.out, "q8 disabled: exact decode");
        free(dpos), free(mag), free(y2), free(yref), free(y), free(x);
        qk_free(&L);
        quant_layer_free(&q);
        run++;
    }
    /* layouts it does not take: 2/3-bit, groups that are not whole 128-input blocks */
    layer_case no[] = {{8, 256, 2, 128, ORDER_MONO, 0, 0}, {8, 256, 3, 128, ORDER_MONO, 0, 0},
                       {8, 256, 4, 64, ORDER_MONO, 0, 0},  {8, 256, 8, 32, ORDER_ACT, 0, 0},
                       {8, 96, 4, -1, ORDER_MONO, 0, 0}};
    for (size_t k = 0; k < sizeof no / sizeof no[0]; k++) {
        quant_layer q;
        make_layer(&no[k], &q);
        qk_layer L;
        CHECK(qk_from_quant(&q, &L) == 0, "q8 negative: qk_from_quant: %s", gptq_last_error());
        CHECK(!qk_q8_supported(&L), "q8 must not take %d-bit g%d in %lld", no[k].bits, no[k].group_size, (long long)no[k].in);
        qk_free(&L);
        quant_layer_free(&q);
    }
    printf("q8 decode: %d layers checked against the bound\n", run);
}

/* qk_gemv_q8_multi: layers sharing an input (q/k/v, gate/up) in one pass give exactly
 * the outputs of separate qk_gemv_q8 calls; layers whose inputs are laid out differently
 * are refused (return 0, outputs untouched) so the caller falls back. */
static void test_q8_multi(void) {
    if (!cpu_get_features()->avx512vnni) return;
    for (int round = 0; round < 6; round++) {
        const int n = 1 + irand(4);
        layer_case lc = {0};
        lc.bits = round % 3 == 2 ? 8 : 4;
        lc.group_size = round % 2 ? 128 : -1;
        lc.in = round % 2 ? 512 : 384;
        lc.order = round == 3 ? ORDER_ACT : ORDER_MONO;
        lc.sym = round % 2;
        quant_layer q[4];
        qk_layer L[4];
        const qk_layer *Lp[4];
        float *y[4], *ys[4];
        float *x = random_x(lc.in);
        for (int i = 0; i < n; i++) {
            lc.out = 1 + irand(300);
            make_layer(&lc, &q[i]);
            if (i > 0 && lc.order == ORDER_ACT) memcpy(q[i].g_idx, q[0].g_idx, sizeof(int32_t) * (size_t)lc.in);
            CHECK(qk_from_quant(&q[i], &L[i]) == 0, "q8 multi: qk_from_quant: %s", gptq_last_error());
            Lp[i] = &L[i];
            y[i] = xmalloc(sizeof(float) * lc.out), ys[i] = xmalloc(sizeof(float) * lc.out);
            qk_gemv_q8(&L[i], ys[i], x);
        }
        CHECK(qk_gemv_q8_multi(Lp, y, n, x) == 1, "q8 multi: %d layers of one input refused", n);
        for (int i = 0; i < n; i++)
            CHECK(memcmp(y[i], ys[i], sizeof(float) * L[i].out) == 0, "q8 multi: layer %d of %d differs from its own GEMV", i, n);
        for (int i = 0; i < n; i++) free(y[i]), free(ys[i]), qk_free(&L[i]), quant_layer_free(&q[i]);
        free(x);
    }
    /* different input widths, and act-order layers with different permutations */
    layer_case a = {64, 256, 4, 128, ORDER_MONO, 0, 0}, b = {64, 384, 4, 128, ORDER_MONO, 0, 0};
    layer_case c = {64, 512, 4, 128, ORDER_ACT, 0, 0};
    quant_layer qa, qb, qc, qd;
    qk_layer La, Lb, Lc, Ld;
    make_layer(&a, &qa), make_layer(&b, &qb), make_layer(&c, &qc), make_layer(&c, &qd);
    CHECK(!qk_from_quant(&qa, &La) && !qk_from_quant(&qb, &Lb) && !qk_from_quant(&qc, &Lc) && !qk_from_quant(&qd, &Ld),
          "q8 multi: qk_from_quant");
    float *x = random_x(512), *y0 = xmalloc(sizeof(float) * 64), *y1 = xmalloc(sizeof(float) * 64);
    y0[0] = 12345.0f;
    const qk_layer *ab[2] = {&La, &Lb}, *cd[2] = {&Lc, &Ld};
    float *yy[2] = {y0, y1};
    CHECK(qk_gemv_q8_multi(ab, yy, 2, x) == 0 && y0[0] == 12345.0f, "q8 multi: layers of different widths accepted");
    CHECK(qk_gemv_q8_multi(cd, yy, 2, x) == 0 && y0[0] == 12345.0f, "q8 multi: different act-order permutations accepted");
    free(x), free(y0), free(y1);
    qk_free(&La), qk_free(&Lb), qk_free(&Lc), qk_free(&Ld);
    quant_layer_free(&qa), quant_layer_free(&qb), quant_layer_free(&qc), quant_layer_free(&qd);
}

/* 8-bit v1 zero point 256 (stored 255) and v2 zero 0 in one layer set. */
static void test_zero_extremes(void) {
    layer_case lc = {12, 64, 8, 32, ORDER_MONO, 0, 0};
    quant_layer q;
    make_layer(&lc, &q);
    for (int64_t k = 0; k < q.groups * q.out; k++) q.zeros[k] = k % 2 ? 256 : 1;
    float *x = random_x(lc.in), y[12], yref[12];
    double mag[12];
    oracle(&q, x, 1, yref, mag);
    qk_layer L;
    CHECK(qk_from_quant(&q, &L) == 0 && L.zero_base == 1, "8-bit zero 256 -> zero_base 1");
    qk_matmul(&L, y, x, 1);
    compare(y, yref, mag, 12, "8-bit zero 256");
    qk_free(&L);
    q.zeros[0] = 0; /* 0 and 256 together cannot be held */
    CHECK(qk_from_quant(&q, &L) != 0, "zero points 0..256 rejected");
    quant_layer_free(&q);
    free(x);
}

static void test_errors(void) {
    quant_layer q;
    layer_case lc = {8, 64, 4, 32, ORDER_MONO, 0, 0};
    make_layer(&lc, &q);
    qk_layer L;
    q.g_idx[3] = 7;
    CHECK(qk_from_quant(&q, &L) != 0 && strstr(gptq_last_error(), "group"), "g_idx out of range: %s", gptq_last_error());
    q.g_idx[3] = 0;
    q.codes[5] = 16;
    CHECK(qk_from_quant(&q, &L) != 0, "code 16 for 4-bit rejected");
    q.codes[5] = 1;
    q.scales[2] = 0.1f;
    CHECK(qk_from_quant(&q, &L) != 0 && strstr(gptq_last_error(), "fp16"), "non-fp16 scale: %s", gptq_last_error());
    quant_layer_free(&q);
    int32_t dummy[64] = {0};
    uint16_t sc[64] = {0};
    CHECK(qk_from_gptq(dummy, dummy, sc, NULL, 8, 48, 1, 4, -1, 0, &L) != 0, "in %% 32 != 0 rejected");
    CHECK(qk_from_gptq(dummy, dummy, sc, NULL, 8, 64, 1, 5, -1, 0, &L) != 0, "5 bits rejected");
}

/* ---- benchmark ---- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*bench_fn)(void *ctx);

/* Runs fn reps times; best and median seconds per call. */
static void time_it(bench_fn fn, void *ctx, int reps, double *best, double *median) {
    double t[64];
    if (reps > 64) reps = 64;
    fn(ctx); /* warm up */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        fn(ctx);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    *best = t[0];
    *median = t[reps / 2];
}

/* Copies of the layer cycled through so the weights come from DRAM, not the 32 MiB L3
 * (GPTQ_BENCH_COPIES=1: one copy, L3-resident for the 22.5 MiB layers: compute speed). */
enum { BENCH_MAX_COPIES = 8 };
static int BENCH_COPIES = 4;

typedef struct {
    const qk_layer *L; /* BENCH_COPIES copies */
    int next;
    const void *wd;
    int64_t out, in;
    float *y;
    const float *x;
    int T;
    qk_path path;
    int blas_min_t;
} bench_ctx;

static void run_q(void *p) {
    bench_ctx *c = p;
    qk_matmul_ex(&c->L[c->next], c->y, c->x, c->T, c->path, c->blas_min_t);
    c->next = (c->next + 1) % BENCH_COPIES;
}
static void run_dense(void *p) {
    bench_ctx *c = p;
    dense_matmul(c->y, c->x, c->T, c->wd, DT_BF16, c->out, c->in);
}

static void bench_shape(int64_t out, int64_t in) {
    layer_case lc = {out, in, 4, 128, ORDER_MONO, 0, 0};
    quant_layer q;
    make_layer(&lc, &q);
    qk_layer Ls[BENCH_MAX_COPIES];
    {
        gptq_packed pk;
        make_packed(&q, 0, &pk);
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            double t0 = now();
            int rc = qk_from_gptq(pk.qweight, pk.qzeros, pk.scales, pk.g_idx, out, in, q.groups, 4, 128, 0, &Ls[0]);
            printf("bench %lldx%lld: repacking from checkpoint tensors (%d thread%s) %.1f ms%s\n", (long long)out,
                   (long long)in, th, th > 1 ? "s" : "", (now() - t0) * 1e3, rc ? " FAILED" : "");
            if (!rc) qk_free(&Ls[0]);
        }
        gptq_packed_free(&pk);
    }
    for (int k = 0; k < BENCH_COPIES; k++)
        if (qk_from_quant(&q, &Ls[k])) {
            printf("bench: %s\n", gptq_last_error());
            return;
        }
    quant_layer_free(&q);
    const qk_layer L = Ls[0];
    uint16_t *wd = xaligned_alloc(sizeof(uint16_t) * (size_t)(out * in));
    for (int64_t k = 0; k < out * in; k++) wd[k] = f32_to_bf16(0.02f * nrand());
    float *x = random_x(256 * in), *y = xmalloc(sizeof(float) * (size_t)(256 * out));
    const double qbytes = (double)qk_stream_bytes(&L), dbytes = 2.0 * (double)(out * in);
    printf("bench %lldx%lld (out x in) 4-bit g128: packed stream %.1f MiB (x%d copies cycled), bf16 %.1f MiB\n",
           (long long)out, (long long)in, qbytes / 1048576, BENCH_COPIES, dbytes / 1048576);
    const int max_th = getenv("GPTQ_BENCH_THREADS") ? atoi(getenv("GPTQ_BENCH_THREADS")) : 2;
    for (int th = 1; th <= max_th; th++) {
        omp_set_num_threads(th);
        bench_ctx c = {Ls, 0, wd, out, in, y, x, 1, QK_PATH_AUTO, 0};
        double best, med;
        for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
            if (!qk_path_supported(paths[pi])) continue;
            c.path = paths[pi];
            time_it(run_q, &c, paths[pi] == QK_PATH_SCALAR ? 3 : 25, &best, &med);
            printf("  %d thread%s GEMV %-6s  best %7.3f ms  %6.2f GB/s   median %7.3f ms  %6.2f GB/s\n", th,
                   th > 1 ? "s" : " ", qk_path_name(paths[pi]), best * 1e3, qbytes / best * 1e-9, med * 1e3,
                   qbytes / med * 1e-9);
        }
        time_it(run_dense, &c, 15, &best, &med);
        printf("  %d thread%s GEMV dense bf16  best %7.3f ms  %6.2f GB/s   median %7.3f ms  %6.2f GB/s\n", th,
               th > 1 ? "s" : " ", best * 1e3, dbytes / best * 1e-9, med * 1e3, dbytes / med * 1e-9);
        static const int Ts[] = {2, 4, 8, 16, 24, 32, 64, 128, 256};
        const char *mode = getenv("GPTQ_BENCH");
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0] && strcmp(mode, "gemv") != 0; k++) {
            const double gf = 2.0 * (double)Ts[k] * (double)(out * in) * 1e-9;
            double tb, sb, db;
            c.T = Ts[k];
            c.path = QK_PATH_AUTO;
            c.blas_min_t = INT_MAX;
            time_it(run_q, &c, 5, &tb, &med);
            c.blas_min_t = 1;
            time_it(run_q, &c, 5, &sb, &med);
            time_it(run_dense, &c, 3, &db, &med);
            printf("  %d thread%s T=%-3d qk tiled %8.3f ms %6.1f GFLOP/s   qk sgemm %8.3f ms %6.1f GFLOP/s   "
                   "dense bf16 %8.3f ms %6.1f GFLOP/s\n",
                   th, th > 1 ? "s" : " ", Ts[k], tb * 1e3, gf / tb, sb * 1e3, gf / sb, db * 1e3, gf / db);
        }
        c.T = 1;
        c.blas_min_t = 0;
    }
    for (int k = 0; k < BENCH_COPIES; k++) qk_free(&Ls[k]);
    free(wd);
    free(x);
    free(y);
}

/* GEMV speed of the other widths (one thread, best path, 4 copies cycled). */
static void bench_bits(int64_t out, int64_t in) {
    omp_set_num_threads(1);
    static const int bl[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++) {
        layer_case lc = {out, in, bl[b], 128, ORDER_MONO, 0, 0};
        quant_layer q;
        make_layer(&lc, &q);
        qk_layer Ls[BENCH_MAX_COPIES];
        for (int k = 0; k < BENCH_COPIES; k++)
            if (qk_from_quant(&q, &Ls[k])) return;
        quant_layer_free(&q);
        float *x = random_x(in), *y = xmalloc(sizeof(float) * (size_t)out);
        bench_ctx c = {Ls, 0, NULL, out, in, y, x, 1, QK_PATH_AUTO, 0};
        double best, med, bytes = (double)qk_stream_bytes(&Ls[0]);
        time_it(run_q, &c, 25, &best, &med);
        printf("bench %lldx%lld %d-bit g128 GEMV 1 thread %s: best %.3f ms  %.2f GB/s  %.1f Gweights/s   median %.3f ms\n",
               (long long)out, (long long)in, bl[b], cpu_path_name(), best * 1e3, bytes / best * 1e-9,
               (double)(out * in) / best * 1e-9, med * 1e3);
        for (int k = 0; k < BENCH_COPIES; k++) qk_free(&Ls[k]);
        free(x);
        free(y);
    }
}

int main(void) {
    printf("cpu path: %s\n", cpu_path_name());
    double t0 = now();
    test_random_layers();
    test_zero_extremes();
    test_q8_decode();
    test_q8_multi();
    test_errors();
    printf("tests took %.2f s\n", now() - t0);
    if (getenv("GPTQ_BENCH")) {
        if (getenv("GPTQ_BENCH_COPIES")) BENCH_COPIES = atoi(getenv("GPTQ_BENCH_COPIES"));
        if (BENCH_COPIES < 1 || BENCH_COPIES > BENCH_MAX_COPIES) BENCH_COPIES = 4;
        bench_shape(11008, 4096);
        bench_shape(4096, 11008);
        bench_bits(11008, 4096);
    }
    return check_done();
}
