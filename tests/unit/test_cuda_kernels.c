/* Tests of the CUDA kernels (src/kernels/cuda/cuq.h) against the CPU scalar oracle
 * (qk_matmul_ref, from checkpoint tensors) on random layers: 2/3/4/8 bits, monotonic /
 * act-order / arbitrary g_idx, sym / asym, v1 / v2 zero points; the fused GEMV at
 * T = 1..8, the dequantize + cuBLAS path at T = 17 and 64, the fp16 dense GEMV and GEMM.
 * Skips (77) when the build has no CUDA or no GPU is present.
 *
 * GPTQ_BENCH=1 also measures, on the GPU: the device-to-device copy bandwidth; the 224
 * Linear GEMVs of one Llama-2-7B decode step (32 layers of q/k/v/o 4096x4096, gate/up
 * 11008x4096, down 4096x11008) at 2/3/4/8-bit g128 (4-bit also act-order) and fp16,
 * replayed from a CUDA graph, T = 1..8; the prefill GEMMs of one layer at T = 2048 through
 * dequantize + cuBLAS against cuBLAS on fp16 weights.  GPTQ_BENCH=tiled: only the 4-bit
 * decode GEMVs, codes in the qk layout against the 16-row tile layout (cuq.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifndef GPTQ_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/qmatmul.h"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/model_kernels.h"
#include "quant/pack.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static int irand(int n) { return (int)((next_u64() >> 33) % (uint64_t)n); }
static double urand(void) { return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0; }
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

#define CU(call)                                                                     \
    do {                                                                             \
        cudaError_t e_ = (call);                                                     \
        if (e_ != cudaSuccess) {                                                     \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static void *dmalloc(size_t n) {
    void *p;
    CU(cudaMalloc(&p, n));
    return p;
}
static void *dupload(const void *h, size_t n) {
    void *p = dmalloc(n);
    CU(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice));
    return p;
}

enum { ORDER_MONO, ORDER_ACT, ORDER_RANDOM };
static const char *order_name[] = {"monotonic", "act-order", "random-g_idx"};

typedef struct {
    int64_t out, in;
    int bits, group_size, order, sym, v2;
} layer_case;

/* A random quantized layer (as test_qkernels.c makes them). */
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
    if (lc->order == ORDER_ACT)
        for (int64_t i = in - 1; i > 0; i--) {
            int64_t j = irand((int)i + 1);
            int32_t t = q->g_idx[i];
            q->g_idx[i] = q->g_idx[j];
            q->g_idx[j] = t;
        }
}

static double worst_gemv, worst_gemv16, worst_gemm;

/* normwise ‖y − yref‖∞ / ‖yref‖∞ */
static double rel_err(const float *y, const float *yref, int64_t n) {
    double maxd = 0, maxr = 0;
    for (int64_t k = 0; k < n; k++) {
        double d = fabs((double)y[k] - yref[k]);
        if (!(d <= maxd)) maxd = d; /* NaN propagates */
        if (fabs(yref[k]) > maxr) maxr = fabs(yref[k]);
    }
    return maxr > 0 ? maxd / maxr : maxd;
}

static cublasHandle_t blas;
static int cases_run, products_run;

static void run_case(const layer_case *lc) {
    char name[160];
    snprintf(name, sizeof name, "%lldx%lld %d-bit g%d %s %s %s", (long long)lc->out, (long long)lc->in, lc->bits,
             lc->group_size, order_name[lc->order], lc->sym ? "sym" : "asym", lc->v2 ? "v2" : "v1");
    quant_layer q;
    make_layer(lc, &q);
    const int Tmax = 64;
    float *x = xmalloc(sizeof(float) * (size_t)(Tmax * lc->in));
    for (int64_t i = 0; i < Tmax * lc->in; i++) x[i] = nrand() * (irand(50) == 0 ? 20.0f : 1.0f);
    float *yref = xmalloc(sizeof(float) * (size_t)(Tmax * lc->out)), *y = xmalloc(sizeof(float) * (size_t)(Tmax * lc->out));
    gptq_packed pk;
    int rc = gptq_pack(&q, &pk);
    CHECK(rc == 0, "%s: pack: %s", name, gptq_last_error());
    if (rc) goto done;
    rc = qk_matmul_ref(pk.qweight, pk.qzeros, pk.scales, pk.g_idx, lc->out, lc->in, q.groups, lc->bits, lc->group_size, 0,
                       yref, x, Tmax);
    CHECK(rc == 0, "%s: oracle: %s", name, gptq_last_error());
    qk_layer L;
    rc = qk_from_gptq(pk.qweight, pk.qzeros, pk.scales, pk.g_idx, lc->out, lc->in, q.groups, lc->bits, lc->group_size, 0,
                      &L);
    CHECK(rc == 0, "%s: qk_from_gptq: %s", name, gptq_last_error());
    if (rc) goto done_pk;
    cuq_layer d;
    cuq_set_tiled(0); /* the qk layout here, the tile layout further down */
    rc = cuq_upload(&L, &d);
    CHECK(rc == 0, "%s: upload: %s", name, gptq_last_error());
    if (rc) goto done_L;
    float *dx = dupload(x, sizeof(float) * (size_t)(Tmax * lc->in));
    float *dy = dmalloc(sizeof(float) * (size_t)(Tmax * lc->out));
    float *dxb = dmalloc(sizeof(float) * (size_t)(Tmax * L.in_pad));
    uint16_t *w16 = dmalloc(sizeof(uint16_t) * (size_t)(lc->out * L.in_pad));
    uint16_t *x16 = dmalloc(sizeof(uint16_t) * (size_t)(Tmax * L.in_pad));
    static const int Ts[] = {1, 2, 3, 4, 5, 8, 17, 64, 1, 3, 8, 1, 5};
    for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
        /* then the fp16 kernels: tensor-core where eligible, then half2 (3-bit: the fp32 one again) */
        const int T = Ts[k], fp32 = k < 8;
        cuq_gemv_set_fp32(fp32);
        cuq_gemv_set_mma(k < 11);
        CU(cudaMemset(dy, 0xff, sizeof(float) * (size_t)(Tmax * lc->out))); /* NaN poison */
        int r2 = T <= CUQ_MAX_GEMV_T ? cuq_gemv(&d, dy, dx, dxb, T, 0) : cuq_gemm(blas, &d, dy, dx, T, w16, x16, 0);
        CHECK(r2 == 0, "%s T=%d: %s", name, T, gptq_last_error());
        CU(cudaDeviceSynchronize());
        CU(cudaMemcpy(y, dy, sizeof(float) * (size_t)(T * lc->out), cudaMemcpyDeviceToHost));
        double e = rel_err(y, yref, T * lc->out);
        /* fp32 accumulation: rounding only; the fp16 GEMV and GEMM round weights and activations */
        double tol = T <= CUQ_MAX_GEMV_T && fp32 ? 2e-5 : 4e-3;
        CHECK(e <= tol, "%s T=%d%s: normwise relative error %.3g (limit %.1g)", name, T,
              T <= CUQ_MAX_GEMV_T ? (fp32 ? " fp32 GEMV" : " fp16 GEMV") : "", e, tol);
        if (T <= CUQ_MAX_GEMV_T && fp32 && e > worst_gemv) worst_gemv = e;
        if (T <= CUQ_MAX_GEMV_T && !fp32 && e > worst_gemv16) worst_gemv16 = e;
        if (T > CUQ_MAX_GEMV_T && e > worst_gemm) worst_gemm = e;
        products_run++;
    }
    /* the tensor-core GEMV's variants: codes in flight per warp, activations in shared or global memory */
    if (d.bits == 4 && d.block_group) {
        /* (depth, activations in smem, min blocks, bulk copies, warps) */
        static const int cfg[][5] = {{1, 0, 1, 0, 8}, {1, 1, 3, 0, 8}, {2, 0, 4, 0, 8}, {2, 1, 1, 0, 4}, {2, 0, 1, 1, 8},
                                     {2, 1, 4, 1, 8}, {2, 1, 3, 1, 4}, {2, 1, 1, 1, 8}, {4, 0, 1, 0, 8}, {4, 1, 3, 0, 8}};
        static const int Tv[] = {1, 3, 8};
        cuq_gemv_set_fp32(0);
        cuq_gemv_set_mma(1);
        for (int ci = 0; ci < (int)(sizeof cfg / sizeof cfg[0]); ci++)
            for (int ti = 0; ti < 3; ti++) {
                const int T = Tv[ti];
                cuq_gemv_set_depth(cfg[ci][0], cfg[ci][1], cfg[ci][2], cfg[ci][3], cfg[ci][4]);
                CU(cudaMemset(dy, 0xff, sizeof(float) * (size_t)(Tmax * lc->out)));
                CHECK(cuq_gemv(&d, dy, dx, dxb, T, 0) == 0, "%s T=%d variant %d: %s", name, T, ci, gptq_last_error());
                CU(cudaMemcpy(y, dy, sizeof(float) * (size_t)(T * lc->out), cudaMemcpyDeviceToHost));
                double e = rel_err(y, yref, T * lc->out);
                CHECK(e <= 4e-3, "%s T=%d tensor-core GEMV variant %d: normwise relative error %.3g", name, T, ci, e);
                if (e > worst_gemv16) worst_gemv16 = e;
                products_run++;
            }
        cuq_gemv_set_depth(2, 1, 3, 0, 8); /* the defaults */
    }
    /* the 16-row tile layout of the codes: every kernel (fp32, half2, tensor-core GEMV and
     * the dequantization) against the oracle, the dequantized weights bit for bit */
    {
        cuq_layer dt;
        cuq_set_tiled(1);
        rc = cuq_upload(&L, &dt);
        cuq_set_tiled(0);
        CHECK(rc == 0 && dt.tiled, "%s: tiled upload: %s", name, gptq_last_error());
        if (rc == 0) {
            static const int Tt[] = {1, 3, 8};
            /* fp32, half2 (3-bit: fp32), tensor-core where eligible without and with the L2 prefetch */
            for (int kind = 0; kind < 4; kind++)
                for (int ti = 0; ti < 3; ti++) {
                    const int T = Tt[ti];
                    cuq_gemv_set_fp32(kind == 0);
                    cuq_gemv_set_mma(kind >= 2);
                    cuq_gemv_set_prefetch(kind == 3);
                    CU(cudaMemset(dy, 0xff, sizeof(float) * (size_t)(Tmax * lc->out)));
                    CHECK(cuq_gemv(&dt, dy, dx, dxb, T, 0) == 0, "%s T=%d tiled: %s", name, T, gptq_last_error());
                    CU(cudaMemcpy(y, dy, sizeof(float) * (size_t)(T * lc->out), cudaMemcpyDeviceToHost));
                    const double e = rel_err(y, yref, T * lc->out), tol = kind == 0 ? 2e-5 : 4e-3;
                    CHECK(e <= tol, "%s T=%d tiled layout, kernel %d: normwise relative error %.3g", name, T, kind, e);
                    if (kind == 0 && e > worst_gemv) worst_gemv = e;
                    if (kind > 0 && e > worst_gemv16) worst_gemv16 = e;
                    products_run++;
                }
            cuq_gemv_set_mma(1);
            cuq_gemv_set_prefetch(0);
            const size_t nw = sizeof(uint16_t) * (size_t)(lc->out * L.in_pad);
            uint16_t *wa = xmalloc(nw), *wb = xmalloc(nw);
            CU(cudaMemset(w16, 0xff, nw));
            CHECK(cuq_dequant_f16(&dt, w16, 0) == 0, "%s: tiled dequant", name);
            CU(cudaMemcpy(wa, w16, nw, cudaMemcpyDeviceToHost));
            CU(cudaMemset(w16, 0xff, nw));
            CHECK(cuq_dequant_f16(&d, w16, 0) == 0, "%s: dequant", name);
            CU(cudaMemcpy(wb, w16, nw, cudaMemcpyDeviceToHost));
            CHECK(memcmp(wa, wb, nw) == 0, "%s: the tiled layer dequantizes differently", name);
            free(wa), free(wb);
            cuq_free(&dt);
        }
    }
    /* dequantized weights equal the host's exactly (before fp16 rounding of the product) */
    {
        float *wk = xmalloc(sizeof(float) * (size_t)(lc->out * L.in_pad));
        uint16_t *wh = xmalloc(sizeof(uint16_t) * (size_t)(lc->out * L.in_pad));
        qk_dequant_rows(&L, 0, lc->out, wk, QK_PATH_SCALAR);
        CU(cudaMemset(w16, 0xff, sizeof(uint16_t) * (size_t)(lc->out * L.in_pad)));
        CHECK(cuq_dequant_f16(&d, w16, 0) == 0, "%s: dequant", name);
        CU(cudaMemcpy(wh, w16, sizeof(uint16_t) * (size_t)(lc->out * L.in_pad), cudaMemcpyDeviceToHost));
        int same = 1;
        for (int64_t o = 0; o < lc->out && same; o++)
            for (int64_t p = 0; p < L.in_pad; p++) {
                if (L.perm && L.perm[p] < 0) continue;
                same &= wh[o * L.in_pad + p] == f32_to_f16(wk[o * L.in_pad + p]);
            }
        CHECK(same, "%s: fp16 dequantized weights differ from the CPU's", name);
        free(wk);
        free(wh);
    }
    /* the same layer built from codes (zero_base 0 where the zero points allow) */
    {
        qk_layer L0;
        cuq_layer d0;
        rc = qk_from_quant(&q, &L0);
        CHECK(rc == 0, "%s: qk_from_quant: %s", name, gptq_last_error());
        if (rc == 0 && cuq_upload(&L0, &d0) == 0) {
            CU(cudaMemset(dy, 0xff, sizeof(float) * (size_t)(Tmax * lc->out)));
            cuq_gemv_set_fp32(1);
            CHECK(cuq_gemv(&d0, dy, dx, dxb, 1, 0) == 0, "%s: gemv", name);
            CU(cudaMemcpy(y, dy, sizeof(float) * (size_t)lc->out, cudaMemcpyDeviceToHost));
            double e = rel_err(y, yref, lc->out);
            CHECK(e <= 2e-5, "%s (zero_base %d) T=1: normwise relative error %.3g", name, L0.zero_base, e);
            cuq_free(&d0);
        }
        if (rc == 0) qk_free(&L0);
    }
    cudaFree(dx), cudaFree(dy), cudaFree(dxb), cudaFree(w16), cudaFree(x16);
    cuq_free(&d);
done_L:
    qk_free(&L);
done_pk:
    gptq_packed_free(&pk);
done:
    cases_run++;
    quant_layer_free(&q);
    free(x), free(y), free(yref);
}

static void test_random_layers(void) {
    static const int bits_list[] = {2, 3, 4, 8};
    static const int gs_list[] = {32, 64, 128, -1, 96, 48, 40};
    static const int64_t in_list[] = {32, 96, 128, 256, 320, 512, 1024, 2080};
    for (size_t b = 0; b < 4; b++)
        for (int n = 0; n < 9; n++) {
            layer_case lc;
            lc.bits = bits_list[b];
            lc.in = in_list[irand(8)];
            lc.group_size = gs_list[irand(7)];
            lc.order = n % 3;
            lc.sym = n % 4 == 1;
            lc.v2 = 0;
            const int64_t unit = 32 / (lc.bits == 3 ? 1 : lc.bits);
            lc.out = unit * (1 + irand(12)); /* checkpoint tensors need out·bits % 32 == 0 */
            run_case(&lc);
        }
    layer_case corners[] = {
        {32, 32, 3, -1, ORDER_MONO, 0, 0},  {16, 64, 2, 32, ORDER_ACT, 0, 0},    {32, 160, 3, 64, ORDER_MONO, 0, 0},
        {24, 224, 4, 128, ORDER_MONO, 1, 0}, {12, 96, 8, 40, ORDER_ACT, 0, 0},   {96, 4096, 4, 128, ORDER_ACT, 0, 0},
        {8, 1024, 4, 32, ORDER_RANDOM, 0, 0}, {64, 1536, 2, 48, ORDER_RANDOM, 0, 0}, {36, 1088, 8, 64, ORDER_MONO, 1, 0},
        {32, 11008, 4, 128, ORDER_MONO, 0, 0}, /* 86 blocks per row: the GEMV rings refill */
    };
    for (size_t k = 0; k < sizeof corners / sizeof corners[0]; k++) run_case(&corners[k]);
    cuq_gemv_set_mma(1);
    printf("%d layers, %d products checked; worst normwise relative error fp32 GEMV %.3g, fp16 GEMV %.3g, fp16 GEMM "
           "%.3g\n",
           cases_run, products_run, worst_gemv, worst_gemv16, worst_gemm);
}

/* Three 4-bit layers of one input width (one act-order) in one launch: the same sums as
 * one launch each. */
static void test_multi(void) {
    static const layer_case lcs[3] = {{96, 1024, 4, 128, ORDER_MONO, 1, 0}, {40, 1024, 4, 128, ORDER_ACT, 0, 0},
                                      {200, 1024, 4, -1, ORDER_MONO, 0, 0}};
    const int T = 3, in = 1024;
    cuq_layer d[3];
    qk_layer L[3];
    float *dy[3], *dy1[3];
    for (int k = 0; k < 3; k++) {
        quant_layer q;
        make_layer(&lcs[k], &q);
        cuq_set_tiled(k == 0); /* one launch over both code layouts */
        CHECK(qk_from_quant(&q, &L[k]) == 0 && cuq_upload(&L[k], &d[k]) == 0, "multi: layer %d", k);
        cuq_set_tiled(0);
        CHECK(d[k].block_group, "multi: layer %d is eligible for the tensor-core kernel", k);
        quant_layer_free(&q);
        dy[k] = dmalloc(sizeof(float) * (size_t)(T * lcs[k].out));
        dy1[k] = dmalloc(sizeof(float) * (size_t)(T * lcs[k].out));
    }
    float *x = xmalloc(sizeof(float) * (size_t)(T * in));
    for (int i = 0; i < T * in; i++) x[i] = nrand();
    float *dx = dupload(x, sizeof(float) * (size_t)(T * in)), *xb = dmalloc(sizeof(float) * (size_t)(3 * T * in));
    cuq_gemv_set_fp32(0);
    cuq_gemv_set_mma(1);
    for (int k = 0; k < 3; k++) CHECK(cuq_gemv(&d[k], dy1[k], dx, xb, T, 0) == 0, "multi: single %d", k);
    const cuq_layer *lp[3] = {&d[0], &d[1], &d[2]};
    CHECK(cuq_gemv_multi(lp, dy, 3, dx, xb, T, 0) == 0, "multi: %s", gptq_last_error());
    for (int k = 0; k < 3; k++) {
        const size_t nb = sizeof(float) * (size_t)(T * lcs[k].out);
        float *a = xmalloc(nb), *b = xmalloc(nb);
        CU(cudaMemcpy(a, dy[k], nb, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(b, dy1[k], nb, cudaMemcpyDeviceToHost));
        CHECK(memcmp(a, b, nb) == 0, "multi: layer %d differs from its own launch", k);
        free(a), free(b);
        cudaFree(dy[k]), cudaFree(dy1[k]);
        cuq_free(&d[k]);
        qk_free(&L[k]);
    }
    cudaFree(dx), cudaFree(xb);
    free(x);
}

/* SwiGLU fused into the GEMV's activation loads: the same sums as cuk_silu_mul and then
 * cuq_gemv (both round silu(g) · u to fp16 at the same point), for a layer the fused
 * tensor-core kernel takes and an act-order one (the fallback). */
static void test_silu(void) {
    static const layer_case lcs[2] = {{80, 2048, 4, 128, ORDER_MONO, 0, 0}, {48, 1024, 4, 128, ORDER_ACT, 0, 0}};
    cuq_gemv_set_fp32(0);
    cuq_gemv_set_mma(1);
    for (int k = 0; k < 2; k++) {
        quant_layer q;
        qk_layer L;
        cuq_layer d;
        make_layer(&lcs[k], &q);
        cuq_set_tiled(k == 0);
        CHECK(qk_from_quant(&q, &L) == 0 && cuq_upload(&L, &d) == 0, "silu: layer %d", k);
        cuq_set_tiled(0);
        quant_layer_free(&q);
        const int64_t in = lcs[k].in, out = lcs[k].out;
        static const int Ts[] = {1, 3, 8};
        for (int ti = 0; ti < 3; ti++) {
            const int T = Ts[ti];
            float *hg = xmalloc(sizeof(float) * (size_t)(T * in)), *hu = xmalloc(sizeof(float) * (size_t)(T * in));
            for (int64_t i = 0; i < T * in; i++) hg[i] = 3.0f * nrand(), hu[i] = nrand();
            float *g = dupload(hg, sizeof(float) * (size_t)(T * in)), *g2 = dupload(hg, sizeof(float) * (size_t)(T * in)),
                  *u = dupload(hu, sizeof(float) * (size_t)(T * in)), *xb = dmalloc(sizeof(float) * (size_t)(T * L.in_pad));
            float *y = dmalloc(sizeof(float) * (size_t)(T * out)), *y2 = dmalloc(sizeof(float) * (size_t)(T * out));
            CHECK(cuq_gemv_silu(&d, y, g, u, xb, T, 0) == 0, "silu: %s", gptq_last_error());
            CHECK(cuk_silu_mul(g2, u, T * in, 0) == 0 && cuq_gemv(&d, y2, g2, xb, T, 0) == 0, "silu: %s", gptq_last_error());
            const size_t nb = sizeof(float) * (size_t)(T * out);
            float *a = xmalloc(nb), *b = xmalloc(nb);
            CU(cudaMemcpy(a, y, nb, cudaMemcpyDeviceToHost));
            CU(cudaMemcpy(b, y2, nb, cudaMemcpyDeviceToHost));
            CHECK(memcmp(a, b, nb) == 0, "silu: layer %d T=%d: fused SwiGLU differs from silu_mul + GEMV", k, T);
            free(a), free(b), free(hg), free(hu);
            cudaFree(g), cudaFree(g2), cudaFree(u), cudaFree(xb), cudaFree(y), cudaFree(y2);
        }
        cuq_free(&d);
        qk_free(&L);
    }
}

/* Max |a - b| / max |b| over n floats. */
static double max_rel_diff(const float *a, const float *b, int64_t n) { return rel_err(a, b, n); }

/* y (T, out) = x (T, in) times q's weights, scale · (code − zero), summed in double. */
static void dequant_matmul(const quant_layer *q, const float *x, int T, float *y) {
    for (int k = 0; k < T; k++)
        for (int64_t o = 0; o < q->out; o++) {
            double acc = 0;
            for (int64_t i = 0; i < q->in; i++) {
                const int64_t g = q->g_idx[i];
                acc += (double)q->scales[g * q->out + o] * (q->codes[o * q->in + i] - q->zeros[g * q->out + o]) * x[k * q->in + i];
            }
            y[k * q->out + o] = (float)acc;
        }
}

/* Fragment order on the host (cuq.h): word (k, b, t, 4p + w) = (x[i], x[i + 64]). */
static void host_frag(uint16_t *hf, const float *x, const int32_t *perm, int64_t in, int64_t in_pad, int T) {
    const int64_t rb = in_pad / 128;
    for (int k = 0; k < T; k++)
        for (int64_t i = 0; i < in_pad; i++) {
            const int64_t b = i / 128, q = i % 64, hi = (i / 64) % 2;
            const int64_t p = (q / 32) * 2 + (q / 16) % 2, t = (q / 4) % 4, w = q % 4;
            const int64_t word = ((k * rb + b) * 4 + t) * 16 + p * 4 + w;
            const int64_t src = perm ? perm[i] : i;
            hf[2 * word + hi] = f32_to_f16(src >= 0 && src < in ? x[k * in + src] : 0.0f);
        }
}

/* The fragment-order GEMV (qgemv_frag.cu): cuk_frag16's layout against the host's, the
 * GEMV against the tensor-core kernel on the same layers (which the oracle checks above),
 * three layers in one launch, and the gate/up pair's silu(gate) · up against the two
 * GEMVs and cuk_silu_mul. */
/* The persistent form of the fragment-order GEMV (8 warps, `slots` resident blocks assumed so
 * that these small launches take it) against the one-tile-per-block kernel with 8 warps:
 * bit-identical sums (n layers in one launch, outs[k] rows each). */
/* Whether two device arrays of n floats hold the same bits. */
static int same_bits(const float *da, const float *db, size_t n) {
    float *a = xmalloc(sizeof(float) * n), *b = xmalloc(sizeof(float) * n);
    CU(cudaMemcpy(a, da, sizeof(float) * n, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(b, db, sizeof(float) * n, cudaMemcpyDeviceToHost));
    const int same = memcmp(a, b, sizeof(float) * n) == 0;
    free(a), free(b);
    return same;
}

static void check_frag_multi(const cuq_layer *const *lp, int n, const int64_t *outs, const uint32_t *xf, int T, int slots,
                             const char *what) {
    const int W = 8;
    float *ya[3], *yb[3];
    for (int k = 0; k < n; k++) ya[k] = dmalloc(sizeof(float) * (size_t)(T * outs[k])), yb[k] = dmalloc(sizeof(float) * (size_t)(T * outs[k]));
    cuq_frag_set(0, 0);
    cuq_frag_set_multi(1, slots);
    cuq_frag_set_dual(0); /* one tile per warp step first */
    const long before = cuq_frag_multi_launches();
    CHECK(cuq_gemv_frag(lp, ya, n, xf, T, 0) == 0, "%s: persistent form: %s", what, gptq_last_error());
    int tiles = 0;
    for (int k = 0; k < n; k++) tiles += (int)((outs[k] + 15) / 16);
    if (tiles > slots) CHECK(cuq_frag_multi_launches() == before + 1, "%s: the persistent form was not taken", what);
    cuq_frag_set_multi(0, 0);
    cuq_frag_set(1, W);
    CHECK(cuq_gemv_frag(lp, yb, n, xf, T, 0) == 0, "%s: one tile per block: %s", what, gptq_last_error());
    cuq_frag_set(0, 0);
    cuq_frag_set_multi(-1, 0);
    cuq_frag_set_dual(-1);
    /* two tiles per warp step (MODE 2), in ceil(units / nt) blocks and on every slot */
    for (int dual = 1; n > 1 && dual <= 2; dual++) {
        float *yc[3];
        for (int k = 0; k < n; k++) yc[k] = dmalloc(sizeof(float) * (size_t)(T * outs[k]));
        cuq_frag_set_dual(dual);
        cuq_frag_set_multi(1, slots);
        const long b0 = cuq_frag_multi_launches();
        CHECK(cuq_gemv_frag(lp, yc, n, xf, T, 0) == 0, "%s: dual form: %s", what, gptq_last_error());
        cuq_frag_set_multi(-1, 0);
        cuq_frag_set_dual(-1);
        CHECK(cuq_frag_multi_launches() == b0 + 1, "%s: the dual form was not taken", what);
        for (int k = 0; k < n; k++) {
            CHECK(same_bits(yc[k], yb[k], (size_t)(T * outs[k])), "%s: layer %d T=%d: the dual form %d (%d slots) differs", what, k,
                  T, dual, slots);
            cudaFree(yc[k]);
        }
    }
    for (int k = 0; k < n; k++) {
        CHECK(same_bits(ya[k], yb[k], (size_t)(T * outs[k])), "%s: layer %d T=%d: the persistent form (%d warps, %d slots) differs",
              what, k, T, W, slots);
        cudaFree(ya[k]), cudaFree(yb[k]);
    }
}

static void test_frag(void) {
    static const layer_case lcs[] = {{40, 1024, 4, 128, ORDER_MONO, 0, 0},  {96, 2048, 4, 128, ORDER_ACT, 0, 0},
                                     {200, 1024, 4, -1, ORDER_MONO, 1, 0},  {64, 11008, 4, 128, ORDER_MONO, 0, 0},
                                     {128, 768, 4, 256, ORDER_MONO, 0, 1}, {16, 128, 4, 128, ORDER_MONO, 0, 0}};
    enum { NC = sizeof lcs / sizeof lcs[0] };
    cuq_gemv_set_fp32(0);
    cuq_gemv_set_mma(1);
    double worst = 0, worst_layout = 0, worst_oracle = 0;
    int checked = 0;
    for (int c = 0; c < NC; c++) {
        quant_layer q;
        qk_layer L;
        cuq_layer d;
        make_layer(&lcs[c], &q);
        cuq_set_tiled(1);
        CHECK(qk_from_quant(&q, &L) == 0 && cuq_upload(&L, &d) == 0, "frag: layer %d: %s", c, gptq_last_error());
        cuq_set_tiled(2);

        CHECK(cuq_frag_ok(&d), "frag: layer %d is eligible", c);
        const int64_t in = lcs[c].in, out = lcs[c].out;
        static const int Ts[] = {1, 2, 5, 8};
        for (int ti = 0; ti < 4; ti++) {
            const int T = Ts[ti];
            float *hx = xmalloc(sizeof(float) * (size_t)(T * in));
            for (int64_t i = 0; i < T * in; i++) hx[i] = nrand();
            float *x = dupload(hx, sizeof(float) * (size_t)(T * in)), *xb = dmalloc(sizeof(float) * (size_t)(T * d.in_pad));
            uint32_t *xf = dmalloc(sizeof(uint32_t) * (size_t)cuq_frag_words(d.in_pad, T));
            float *y = dmalloc(sizeof(float) * (size_t)(T * out)), *y2 = dmalloc(sizeof(float) * (size_t)(T * out));
            CHECK(cuk_frag16(xf, x, NULL, d.perm, in, d.in_pad, T, 0) == 0, "frag16: %s", gptq_last_error());
            /* the layout */
            int32_t *hperm = NULL;
            if (d.perm) {
                hperm = xmalloc(sizeof(int32_t) * (size_t)d.in_pad);
                CU(cudaMemcpy(hperm, d.perm, sizeof(int32_t) * (size_t)d.in_pad, cudaMemcpyDeviceToHost));
            }
            const size_t fb = sizeof(uint32_t) * (size_t)cuq_frag_words(d.in_pad, T);
            uint16_t *want = xmalloc(fb), *got = xmalloc(fb);
            host_frag(want, hx, hperm, in, d.in_pad, T);
            CU(cudaMemcpy(got, xf, fb, cudaMemcpyDeviceToHost));
            CHECK(memcmp(want, got, fb) == 0, "frag16: layer %d T=%d: layout differs from the host's", c, T);
            /* the GEMV */
            const cuq_layer *lp[1] = {&d};
            float *ys[1] = {y};
            static const int fcfg[4][2] = {{0, 0}, {1, 16}, {4, 4}, {2, 8}}; /* (depth, warps): every kernel form */
            cuq_frag_set(fcfg[ti][0], fcfg[ti][1]);
            CHECK(cuq_gemv_frag(lp, ys, 1, xf, T, 0) == 0, "frag gemv: %s", gptq_last_error());
            cuq_frag_set(0, 0);
            CHECK(cuq_gemv(&d, y2, x, xb, T, 0) == 0, "frag: reference gemv: %s", gptq_last_error());
            const size_t nb = sizeof(float) * (size_t)(T * out);
            float *a = xmalloc(nb), *b = xmalloc(nb);
            CU(cudaMemcpy(a, y, nb, cudaMemcpyDeviceToHost));
            CU(cudaMemcpy(b, y2, nb, cudaMemcpyDeviceToHost));
            /* The frag GEMV multiplies code - zero (exact in fp16) by the fp16 inputs with fp32
             * sums: the oracle on the same fp16-rounded inputs agrees to fp32 rounding.  The
             * tensor-core GEMV subtracts (1024 + z) Σx instead, a cancellation of ~1e-5. */
            float *h16 = xmalloc(sizeof(float) * (size_t)(T * in)), *yo = xmalloc(nb);
            for (int64_t i = 0; i < T * in; i++) h16[i] = f16_to_f32(f32_to_f16(hx[i]));
            dequant_matmul(&q, h16, T, yo);
            const double eo = rel_err(a, yo, T * out);
            CHECK(eo <= 2e-6, "frag gemv: layer %d T=%d: relative error %.3g from the oracle on fp16 inputs", c, T, eo);
            if (eo > worst_oracle) worst_oracle = eo;
            free(h16), free(yo);
            const double e = max_rel_diff(a, b, T * out);
            CHECK(e <= 1e-4, "frag gemv: layer %d T=%d: relative difference %.3g from the tensor-core GEMV", c, T, e);
            if (e > worst) worst = e;
            checked++;
            {   /* the persistent form: 3 and 4 tiles per block */
                const int tiles = (int)((out + 15) / 16);
                check_frag_multi(lp, 1, &out, xf, T, (tiles + 2) / 3, "frag multi");
                check_frag_multi(lp, 1, &out, xf, T, (tiles + 3) / 4, "frag multi");
            }
            free(a), free(b), free(want), free(got), free(hperm), free(hx);
            cudaFree(x), cudaFree(xb), cudaFree(xf), cudaFree(y), cudaFree(y2);
        }
        cuq_free(&d);
        qk_free(&L);
        quant_layer_free(&q);
    }
    /* three layers in one launch = one launch each; then the gate/up pair */
    {
        static const layer_case ml[3] = {{96, 1024, 4, 128, ORDER_MONO, 1, 0}, {40, 1024, 4, 128, ORDER_MONO, 0, 0},
                                         {256, 1024, 4, 128, ORDER_MONO, 0, 0}};
        const int T = 3, in = 1024;
        cuq_layer d[3];
        qk_layer L[3];
        for (int k = 0; k < 3; k++) {
            quant_layer q;
            make_layer(&ml[k], &q);
            cuq_set_tiled(1);
            CHECK(qk_from_quant(&q, &L[k]) == 0 && cuq_upload(&L[k], &d[k]) == 0, "frag multi: layer %d", k);
            cuq_set_tiled(2);
            quant_layer_free(&q);
        }
        float *hx = xmalloc(sizeof(float) * (size_t)(T * in));
        for (int i = 0; i < T * in; i++) hx[i] = 2.0f * nrand();
        float *x = dupload(hx, sizeof(float) * (size_t)(T * in));
        uint32_t *xf = dmalloc(sizeof(uint32_t) * (size_t)cuq_frag_words(in, T));
        CHECK(cuk_frag16(xf, x, NULL, NULL, in, in, T, 0) == 0, "frag multi: %s", gptq_last_error());
        float *y[3], *y1[3];
        for (int k = 0; k < 3; k++) y[k] = dmalloc(sizeof(float) * (size_t)(T * ml[k].out)), y1[k] = dmalloc(sizeof(float) * (size_t)(T * ml[k].out));
        const cuq_layer *lp[3] = {&d[0], &d[1], &d[2]};
        CHECK(cuq_gemv_frag(lp, y, 3, xf, T, 0) == 0, "frag multi: %s", gptq_last_error());
        {   /* tiles of all three layers (6 + 3 + 16) in 9 / 7 persistent blocks (3 / 4 tiles each) */
            const int64_t outs[3] = {ml[0].out, ml[1].out, ml[2].out};
            check_frag_multi(lp, 3, outs, xf, T, 9, "frag three layers");
            check_frag_multi(lp, 3, outs, xf, T, 7, "frag three layers");
            check_frag_multi(lp, 3, outs, xf, 1, 9, "frag three layers, token 0");
            check_frag_multi(lp, 3, outs, xf, 1, 7, "frag three layers, token 0");
        }
        for (int k = 0; k < 3; k++) {
            CHECK(cuq_gemv_frag(&lp[k], &y1[k], 1, xf, T, 0) == 0, "frag multi: single %d", k);
            const size_t nb = sizeof(float) * (size_t)(T * ml[k].out);
            float *a = xmalloc(nb), *b = xmalloc(nb);
            CU(cudaMemcpy(a, y[k], nb, cudaMemcpyDeviceToHost));
            CU(cudaMemcpy(b, y1[k], nb, cudaMemcpyDeviceToHost));
            CHECK(memcmp(a, b, nb) == 0, "frag multi: layer %d differs from its own launch", k);
            free(a), free(b);
        }
        /* gate = layer 2 (256 rows), up = a second 256-row layer: hf against silu_mul of the two GEMVs */
        {
            static const layer_case ul = {256, 1024, 4, 128, ORDER_MONO, 1, 0};
            quant_layer q;
            qk_layer Lu;
            cuq_layer du;
            make_layer(&ul, &q);
            cuq_set_tiled(1);
            CHECK(qk_from_quant(&q, &Lu) == 0 && cuq_upload(&Lu, &du) == 0, "frag pair: up layer");
            cuq_set_tiled(2);
            quant_layer_free(&q);
            const int64_t n = 256;
            for (int T2 = 1; T2 <= 8; T2 += 7) {
                uint32_t *xf2 = dmalloc(sizeof(uint32_t) * (size_t)cuq_frag_words(in, T2));
                float *hx2 = xmalloc(sizeof(float) * (size_t)(T2 * in));
                for (int i = 0; i < T2 * in; i++) hx2[i] = 2.0f * nrand();
                float *x2 = dupload(hx2, sizeof(float) * (size_t)(T2 * in));
                CHECK(cuk_frag16(xf2, x2, NULL, NULL, in, in, T2, 0) == 0, "frag pair: %s", gptq_last_error());
                uint32_t *hf = dmalloc(sizeof(uint32_t) * (size_t)cuq_frag_words(n, T2));
                float *h = dmalloc(sizeof(float) * (size_t)(T2 * n)), *yg = dmalloc(sizeof(float) * (size_t)(T2 * n)),
                      *yu = dmalloc(sizeof(float) * (size_t)(T2 * n));
                CHECK(cuq_gemv_swiglu_frag(&d[2], &du, hf, h, xf2, T2, 0) == 0, "frag pair: %s", gptq_last_error());
                const cuq_layer *pg[1] = {&d[2]}, *pu[1] = {&du};
                CHECK(cuq_gemv_frag(pg, &yg, 1, xf2, T2, 0) == 0 && cuq_gemv_frag(pu, &yu, 1, xf2, T2, 0) == 0 &&
                          cuk_silu_mul(yg, yu, T2 * n, 0) == 0,
                      "frag pair: reference: %s", gptq_last_error());
                const size_t nb = sizeof(float) * (size_t)(T2 * n), fb = sizeof(uint32_t) * (size_t)cuq_frag_words(n, T2);
                float *a = xmalloc(nb), *b = xmalloc(nb);
                uint16_t *want = xmalloc(fb), *got = xmalloc(fb);
                CU(cudaMemcpy(a, h, nb, cudaMemcpyDeviceToHost));
                CU(cudaMemcpy(b, yg, nb, cudaMemcpyDeviceToHost));
                CHECK(memcmp(a, b, nb) == 0, "frag pair T=%d: silu(gate) . up differs from the two GEMVs + silu_mul", T2);
                host_frag(want, b, NULL, n, n, T2);
                CU(cudaMemcpy(got, hf, fb, cudaMemcpyDeviceToHost));
                CHECK(memcmp(want, got, fb) == 0, "frag pair T=%d: fragment-order output differs", T2);
                /* the pair in persistent blocks (16 tiles: 3 per block) gives the same bits */
                cuq_frag_set_multi(1, 6);
                const long before = cuq_frag_multi_launches();
                CU(cudaMemset(hf, 0, fb));
                CHECK(cuq_gemv_swiglu_frag(&d[2], &du, hf, h, xf2, T2, 0) == 0, "frag pair multi: %s", gptq_last_error());
                cuq_frag_set_multi(-1, 0);
                CHECK(cuq_frag_multi_launches() == before + 1, "frag pair: the persistent form was not taken");
                CU(cudaMemcpy(got, hf, fb, cudaMemcpyDeviceToHost));
                CHECK(memcmp(want, got, fb) == 0, "frag pair T=%d: the persistent form's output differs", T2);
                free(a), free(b), free(want), free(got), free(hx2);
                cudaFree(xf2), cudaFree(x2), cudaFree(hf), cudaFree(h), cudaFree(yg), cudaFree(yu);
            }
            cuq_free(&du);
            qk_free(&Lu);
        }
        for (int k = 0; k < 3; k++) cudaFree(y[k]), cudaFree(y1[k]), cuq_free(&d[k]), qk_free(&L[k]);
        cudaFree(x), cudaFree(xf);
        free(hx);
    }
    (void)worst_layout;
    printf("frag GEMV: %d products, worst normwise error from the oracle on fp16 inputs %.3g, difference from the tensor-core GEMV %.3g\n", checked,
           worst_oracle, worst);
}

/* Dense fp16 GEMV (T <= 8) and GEMM against fp64 sums of the same fp16 weights. */
static void test_dense(void) {
    static const int64_t shapes[][2] = {{1, 8}, {37, 64}, {130, 1000}, {64, 4104}, {5, 13}, {24, 11008}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t out = shapes[s][0], in = shapes[s][1];
        const int Tmax = 20;
        uint16_t *w = xmalloc(sizeof(uint16_t) * (size_t)(out * in));
        float *x = xmalloc(sizeof(float) * (size_t)(Tmax * in)), *y = xmalloc(sizeof(float) * (size_t)(Tmax * out)),
              *yref = xmalloc(sizeof(float) * (size_t)(Tmax * out));
        for (int64_t k = 0; k < out * in; k++) w[k] = f32_to_f16(0.05f * nrand());
        for (int64_t k = 0; k < Tmax * in; k++) x[k] = nrand();
        for (int t = 0; t < Tmax; t++)
            for (int64_t o = 0; o < out; o++) {
                double acc = 0;
                for (int64_t i = 0; i < in; i++) acc += (double)f16_to_f32(w[o * in + i]) * x[t * in + i];
                yref[t * out + o] = (float)acc;
            }
        uint16_t *dw = dupload(w, sizeof(uint16_t) * (size_t)(out * in)), *x16 = dmalloc(sizeof(uint16_t) * (size_t)(Tmax * in));
        float *dx = dupload(x, sizeof(float) * (size_t)(Tmax * in)), *dy = dmalloc(sizeof(float) * (size_t)(Tmax * out));
        /* T = 1..8 at each depth of the GEMV's weight ring, then cuBLAS */
        static const int Ts[] = {1, 3, 8, 1, 2, 4, 1, 2, 3, 20}, depth[] = {1, 1, 1, 2, 2, 2, 4, 4, 4, 2};
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            const int T = Ts[k];
            cuh_gemv_set_depth(depth[k]);
            CU(cudaMemset(dy, 0xff, sizeof(float) * (size_t)(Tmax * out)));
            int rc = T <= CUQ_MAX_GEMV_T ? cuh_gemv(dw, out, in, dy, dx, T, 0) : cuh_gemm(blas, dw, out, in, dy, dx, T, x16, 0);
            CHECK(rc == 0, "dense %lldx%lld T=%d: %s", (long long)out, (long long)in, T, gptq_last_error());
            CU(cudaMemcpy(y, dy, sizeof(float) * (size_t)(T * out), cudaMemcpyDeviceToHost));
            double e = rel_err(y, yref, T * out), tol = T <= CUQ_MAX_GEMV_T ? 2e-5 : 4e-3;
            CHECK(e <= tol, "dense %lldx%lld T=%d: normwise relative error %.3g", (long long)out, (long long)in, T, e);
        }
        /* one token of RMSNorm(x) · nw with the norm made inside (the lm_head's form), each depth */
        float *nw = xmalloc(sizeof(float) * (size_t)in);
        for (int64_t i = 0; i < in; i++) nw[i] = 1.0f + 0.25f * nrand();
        double ss = 0;
        for (int64_t i = 0; i < in; i++) ss += (double)x[i] * x[i];
        const float eps = 1e-5f;
        const double inv = 1.0 / sqrt(ss / (double)in + eps);
        for (int64_t o = 0; o < out; o++) {
            double acc = 0;
            for (int64_t i = 0; i < in; i++) acc += (double)f16_to_f32(w[o * in + i]) * (x[i] * inv * nw[i]);
            yref[o] = (float)acc;
        }
        float *dnw = dupload(nw, sizeof(float) * (size_t)in);
        static const int ndepth[] = {1, 2, 4};
        for (size_t k = 0; k < sizeof ndepth / sizeof ndepth[0]; k++) {
            cuh_gemv_set_depth(ndepth[k]);
            CU(cudaMemset(dy, 0xff, sizeof(float) * (size_t)out));
            const int rc = cuh_gemv_norm(dw, out, in, dy, dx, dnw, eps, 0);
            CHECK(rc == 0, "dense + norm %lldx%lld: %s", (long long)out, (long long)in, gptq_last_error());
            CU(cudaMemcpy(y, dy, sizeof(float) * (size_t)out, cudaMemcpyDeviceToHost));
            const double e = rel_err(y, yref, out);
            CHECK(e <= 2e-5, "dense + norm %lldx%lld depth %d: normwise relative error %.3g", (long long)out, (long long)in, ndepth[k], e);
        }
        cuh_gemv_set_depth(4);
        cudaFree(dnw), free(nw);
        cudaFree(dw), cudaFree(x16), cudaFree(dx), cudaFree(dy);
        free(w), free(x), free(y), free(yref);
    }
}

/* The embedding and the first norm in one kernel against the two kernels apart, with 1 / rms
 * out; widths with and without the vector path and fragment order. */
static void test_embed_norm(void) {
    static const int dims[] = {64, 4096, 4100, 130};
    const int vocab = 50, n = 3;
    const int ids[3] = {7, 0, 49};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        const int dim = dims[k], fr = dim % 128 == 0;
        uint16_t *emb = xmalloc(sizeof(uint16_t) * (size_t)vocab * dim);
        float *w = xmalloc(sizeof(float) * (size_t)dim), *a = xmalloc(sizeof(float) * (size_t)n * dim),
              *b = xmalloc(sizeof(float) * (size_t)n * dim), *xa = xmalloc(sizeof(float) * (size_t)n * dim),
              *xb = xmalloc(sizeof(float) * (size_t)n * dim), inv[3];
        for (int64_t i = 0; i < (int64_t)vocab * dim; i++) emb[i] = f32_to_f16(0.02f * nrand());
        for (int i = 0; i < dim; i++) w[i] = 1.0f + 0.1f * nrand();
        uint16_t *demb = dupload(emb, sizeof(uint16_t) * (size_t)vocab * dim);
        int *dids = dupload(ids, sizeof ids);
        float *dw = dupload(w, sizeof(float) * (size_t)dim), *dx = dmalloc(sizeof(float) * (size_t)n * dim),
              *dout = dmalloc(sizeof(float) * (size_t)n * dim), *dinv = dmalloc(sizeof(float) * 3);
        uint32_t *fa = fr ? dmalloc(sizeof(uint32_t) * (size_t)n * dim / 2) : NULL, *fb = fr ? dmalloc(sizeof(uint32_t) * (size_t)n * dim / 2) : NULL;
        int rc = cuk_embed(demb, dids, dx, n, dim, 0) || cuk_rmsnorm(dout, dx, dw, n, dim, 1e-5f, fa, 0);
        CU(cudaMemcpy(a, dout, sizeof(float) * (size_t)n * dim, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(xa, dx, sizeof(float) * (size_t)n * dim, cudaMemcpyDeviceToHost));
        CU(cudaMemset(dx, 0, sizeof(float) * (size_t)n * dim));
        rc |= cuk_embed_rmsnorm(demb, dids, dx, dout, dw, n, dim, 1e-5f, fb, dinv, 0);
        CHECK(rc == 0, "embedding + rmsnorm, width %d: %s", dim, gptq_last_error());
        CU(cudaMemcpy(b, dout, sizeof(float) * (size_t)n * dim, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(xb, dx, sizeof(float) * (size_t)n * dim, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(inv, dinv, sizeof inv, cudaMemcpyDeviceToHost));
        CHECK(memcmp(a, b, sizeof(float) * (size_t)n * dim) == 0 && memcmp(xa, xb, sizeof(float) * (size_t)n * dim) == 0,
              "embedding + rmsnorm, width %d: not the embedding and the norm apart", dim);
        for (int t = 0; t < n; t++) {
            double ss = 0;
            for (int i = 0; i < dim; i++) ss += (double)xa[(int64_t)t * dim + i] * xa[(int64_t)t * dim + i];
            const double want = 1.0 / sqrt(ss / dim + 1e-5);
            CHECK(fabs(inv[t] - want) <= 1e-5 * want, "embedding + rmsnorm, width %d, token %d: 1 / rms %g, want %g", dim, t, inv[t], want);
        }
        if (fr) {
            uint32_t *ha = xmalloc(sizeof(uint32_t) * (size_t)n * dim / 2), *hb = xmalloc(sizeof(uint32_t) * (size_t)n * dim / 2);
            CU(cudaMemcpy(ha, fa, sizeof(uint32_t) * (size_t)n * dim / 2, cudaMemcpyDeviceToHost));
            CU(cudaMemcpy(hb, fb, sizeof(uint32_t) * (size_t)n * dim / 2, cudaMemcpyDeviceToHost));
            CHECK(memcmp(ha, hb, sizeof(uint32_t) * (size_t)n * dim / 2) == 0, "embedding + rmsnorm, width %d: fragments differ", dim);
            free(ha), free(hb);
        }
        cudaFree(demb), cudaFree(dids), cudaFree(dw), cudaFree(dx), cudaFree(dout), cudaFree(dinv), cudaFree(fa), cudaFree(fb);
        free(emb), free(w), free(a), free(b), free(xa), free(xb);
    }
}

/* ---------------- benchmarks ---------------- */

static float elapsed_ms(cudaEvent_t a, cudaEvent_t b) {
    float ms;
    CU(cudaEventElapsedTime(&ms, a, b));
    return ms;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Median over reps of replaying graph g (after 3 warm-ups). */
static float time_graph(cudaGraphExec_t g, cudaStream_t s, int reps) {
    cudaEvent_t a, b;
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&b));
    float t[64];
    for (int i = 0; i < 3; i++) CU(cudaGraphLaunch(g, s));
    for (int i = 0; i < reps; i++) {
        CU(cudaEventRecord(a, s));
        CU(cudaGraphLaunch(g, s));
        CU(cudaEventRecord(b, s));
        CU(cudaEventSynchronize(b));
        t[i] = elapsed_ms(a, b);
    }
    qsort(t, (size_t)reps, sizeof(float), cmp_float);
    cudaEventDestroy(a), cudaEventDestroy(b);
    return t[reps / 2];
}

static double copy_bandwidth(cudaStream_t s) {
    const size_t n = (size_t)2 << 30;
    void *a = dmalloc(n), *b = dmalloc(n);
    CU(cudaMemset(a, 1, n));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CU(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CU(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s));
    CU(cudaStreamEndCapture(s, &g));
    CU(cudaGraphInstantiate(&ge, g, 0));
    float ms = time_graph(ge, s, 20);
    double bw = 2.0 * (double)n / (ms * 1e-3); /* bytes read + bytes written */
    printf("bench copy: cudaMemcpy device-to-device %.0f MiB in %.3f ms = %.1f GB/s (read + write)\n", n / 1048576.0, ms,
           bw * 1e-9);
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
    CU(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CHECK(cuk_copy(b, a, (int64_t)n, s) == 0, "copy kernel");
    CU(cudaStreamEndCapture(s, &g));
    CU(cudaGraphInstantiate(&ge, g, 0));
    ms = time_graph(ge, s, 20);
    double bw2 = 2.0 * (double)n / (ms * 1e-3);
    printf("bench copy: copy kernel %.0f MiB in %.3f ms = %.1f GB/s (read + write)\n", n / 1048576.0, ms, bw2 * 1e-9);
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaFree(a), cudaFree(b);
    return bw2 > bw ? bw2 : bw; /* the roofline uses the faster probe */
}

/* A device layer of random codes, scales ~0.008, zero 8 (the speed does not depend on the values);
 * bench_tiled: codes in the 16-row tile layout: 0 never, 1 always, 2 as cuq_upload's default
 * (the tensor-core GEMV's layers). */
static int bench_tiled = 2;
static void random_cuq(cuq_layer *d, int64_t out, int64_t in, int bits, int gs, int act_order, uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->out = out, d->in = in, d->in_pad = in, d->nchunks = in / 32, d->bits = bits, d->zero_base = 1;
    d->groups = (in + gs - 1) / gs;
    d->row_blocks = (d->nchunks + QK_CHUNKS_PER_BLOCK(bits) - 1) / QK_CHUNKS_PER_BLOCK(bits);
    d->block_group = d->nchunks % QK_CHUNKS_PER_BLOCK(bits) == 0 && gs % (32 * QK_CHUNKS_PER_BLOCK(bits)) == 0;
    d->tiled = bench_tiled == 1 || (bench_tiled == 2 && bits == 4 && d->block_group);
    const int64_t rows = d->tiled ? (out + 15) / 16 * 16 : out;
    d->qw = dmalloc(sizeof(qk_block) * (size_t)(rows * d->row_blocks));
    CHECK(cuk_fill_random(d->qw, rows * d->row_blocks * 16, seed, 0) == 0, "fill");
    d->scales = dmalloc(sizeof(uint16_t) * (size_t)(out * d->groups));
    CU(cudaMemset(d->scales, 0x20, sizeof(uint16_t) * (size_t)(out * d->groups)));
    d->zeros = dmalloc((size_t)(out * d->groups));
    CU(cudaMemset(d->zeros, 7, (size_t)(out * d->groups)));
    int32_t *cg = xmalloc(sizeof(int32_t) * (size_t)d->nchunks);
    for (int64_t c = 0; c < d->nchunks; c++) cg[c] = (int32_t)(c * 32 / gs);
    d->chunk_group = dupload(cg, sizeof(int32_t) * (size_t)d->nchunks);
    free(cg);
    if (d->tiled && bits == 4 && d->block_group) CHECK(cuq_build_meta(d) == 0, "meta: %s", gptq_last_error());
    if (act_order) { /* a random permutation of the inputs */
        int32_t *p = xmalloc(sizeof(int32_t) * (size_t)in);
        for (int64_t i = 0; i < in; i++) p[i] = (int32_t)i;
        for (int64_t i = in - 1; i > 0; i--) {
            int64_t j = irand((int)i + 1);
            int32_t t = p[i];
            p[i] = p[j], p[j] = t;
        }
        d->perm = dupload(p, sizeof(int32_t) * (size_t)in);
        free(p);
    }
}

enum { NL = 32, NLIN = 7 };
static const int64_t shp7b[NLIN][2] = {{4096, 4096}, {4096, 4096}, {4096, 4096}, {4096, 4096},
                                       {11008, 4096}, {11008, 4096}, {4096, 11008}};

/* The 224 Linear GEMVs of one 7B decode step: quantized (bits > 0) or fp16 (bits == 0). */
static int gemv_fp32, gemv_mma = 1;
static void bench_decode_linears(int bits, int act_order, double copy_bw, const char *tag, cudaStream_t s) {
    cuq_gemv_set_fp32(gemv_fp32);
    cuq_gemv_set_mma(gemv_mma);
    cuq_layer *q = xcalloc(NL * NLIN, sizeof(cuq_layer));
    uint16_t **w = xcalloc(NL * NLIN, sizeof(uint16_t *));
    double bytes = 0;
    for (int l = 0; l < NL; l++)
        for (int j = 0; j < NLIN; j++) {
            const int64_t out = shp7b[j][0], in = shp7b[j][1];
            if (bits) {
                random_cuq(&q[l * NLIN + j], out, in, bits, 128, act_order, (uint64_t)(l * NLIN + j) * 7919u + 1);
                bytes += (double)cuq_stream_bytes(&q[l * NLIN + j]);
            } else {
                w[l * NLIN + j] = dmalloc(sizeof(uint16_t) * (size_t)(out * in));
                CHECK(cuk_fill_f16(w[l * NLIN + j], out * in, (uint64_t)l * 31 + (uint64_t)j, 0.05f, s) == 0, "fill");
                bytes += 2.0 * (double)(out * in);
            }
        }
    float *x = dmalloc(sizeof(float) * 8 * 11008), *y = dmalloc(sizeof(float) * 8 * 11008),
          *xb = dmalloc(sizeof(float) * 8 * 11008);
    float *hx = xmalloc(sizeof(float) * 8 * 11008);
    for (int i = 0; i < 8 * 11008; i++) hx[i] = nrand();
    CU(cudaMemcpy(x, hx, sizeof(float) * 8 * 11008, cudaMemcpyHostToDevice));
    free(hx);
    CU(cudaDeviceSynchronize());
    static const int Ts[] = {1, 2, 4, 8};
    for (int k = 0; k < 4; k++) {
        const int T = Ts[k];
        cudaGraph_t g;
        cudaGraphExec_t ge;
        CU(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        int rc = 0;
        for (int i = 0; i < NL * NLIN; i++) {
            const int j = i % NLIN;
            rc |= bits ? cuq_gemv(&q[i], y, x, xb, T, s) : cuh_gemv(w[i], shp7b[j][0], shp7b[j][1], y, x, T, s);
        }
        CU(cudaStreamEndCapture(s, &g));
        CHECK(rc == 0, "bench capture: %s", gptq_last_error());
        CU(cudaGraphInstantiate(&ge, g, 0));
        float ms = time_graph(ge, s, 15);
        double bw = bytes / (ms * 1e-3);
        printf("bench 7B decode linears %s%s%s%s%s T=%d: %.3f ms per step, %.0f MiB read, %.1f GB/s = %.1f%% of copy "
               "bandwidth, %.1f steps/s\n",
               bits ? (bits == 2 ? "2-bit g128" : bits == 3 ? "3-bit g128" : bits == 4 ? "4-bit g128" : "8-bit g128")
                    : "fp16      ",
               act_order ? " act-order" : "", q[0].tiled ? " tiled" : "", bits == 0 ? "" : bits == 3 || gemv_fp32 ? " fp32-kernel" : bits == 4 && gemv_mma ? " mma-kernel" : " fp16-kernel", tag, T, ms, bytes / 1048576, bw * 1e-9, 100.0 * bw / copy_bw, 1000.0 / ms);
        cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
        if (bits != 4 && bits != 0) break; /* other widths: T = 1 only */
    }
    for (int i = 0; i < NL * NLIN; i++) {
        if (bits) cuq_free(&q[i]);
        else cudaFree(w[i]);
    }
    free(q), free(w);
    cudaFree(x), cudaFree(y), cudaFree(xb);
}

/* The decode linears of the 7B shape layer by layer as the model runs them, tensor-core
 * kernel (q/k/v and gate/up in one launch each, SwiGLU in down_proj's loads) against the
 * fragment-order kernel (q/k/v in one launch, gate/up as a pair writing down_proj's input),
 * whole step and each kind of launch alone, T = 1. */
enum { SEQ_ALL, SEQ_QKV, SEQ_O, SEQ_GU, SEQ_DOWN, SEQ_N };
static const char *seq_name[SEQ_N] = {"layer step", "q/k/v     ", "o_proj    ", "gate/up   ", "down_proj "};
static int capture_seq(cuq_layer *q, int frag, int conv, int which, int T, float *x, float *y, float *y2, float *y3,
                       float *g, float *u, float *xb, uint32_t *xf, uint32_t *hf, cudaStream_t s) {
    int rc = 0;
    for (int l = 0; l < NL; l++) {
        cuq_layer *L = q + l * NLIN;
        const cuq_layer *qkv[3] = {&L[0], &L[1], &L[2]}, *gu[2] = {&L[4], &L[5]};
        float *qkv_y[3] = {y, y2, y3}, *gu_y[2] = {g, u};
        if (which == SEQ_ALL || which == SEQ_QKV) {
            if (frag && conv) rc |= cuk_frag16(xf, x, NULL, NULL, 4096, 4096, T, s);
            rc |= frag ? cuq_gemv_frag(qkv, qkv_y, 3, xf, T, s) : cuq_gemv_multi(qkv, qkv_y, 3, x, xb, T, s);
        }
        if (which == SEQ_ALL || which == SEQ_O) {
            if (frag && conv) rc |= cuk_frag16(xf, x, NULL, NULL, 4096, 4096, T, s);
            const cuq_layer *o[1] = {&L[3]};
            rc |= frag ? cuq_gemv_frag(o, &y, 1, xf, T, s) : cuq_gemv(&L[3], y, x, xb, T, s);
        }
        if (which == SEQ_ALL || which == SEQ_GU)
            rc |= frag ? cuq_gemv_swiglu_frag(&L[4], &L[5], hf, NULL, xf, T, s) : cuq_gemv_multi(gu, gu_y, 2, x, xb, T, s);
        if (which == SEQ_ALL || which == SEQ_DOWN) {
            const cuq_layer *dn[1] = {&L[6]};
            rc |= frag ? cuq_gemv_frag(dn, &y, 1, hf, T, s) : cuq_gemv_silu(&L[6], y, g, u, xb, T, s);
        }
    }
    return rc;
}

static void bench_frag(double copy_bw, cudaStream_t s) {
    cuq_gemv_set_fp32(0);
    cuq_gemv_set_mma(1);
    cuq_layer *q = xcalloc(NL * NLIN, sizeof(cuq_layer));
    double bytes[SEQ_N] = {0};
    for (int l = 0; l < NL; l++)
        for (int j = 0; j < NLIN; j++) {
            random_cuq(&q[l * NLIN + j], shp7b[j][0], shp7b[j][1], 4, 128, 0, (uint64_t)(l * NLIN + j) * 7919u + 1);
            const double b = (double)cuq_stream_bytes(&q[l * NLIN + j]);
            bytes[SEQ_ALL] += b;
            bytes[j < 3 ? SEQ_QKV : j == 3 ? SEQ_O : j < 6 ? SEQ_GU : SEQ_DOWN] += b;
        }
    const size_t nf = 8 * 11008;
    float *x = dmalloc(sizeof(float) * nf), *y = dmalloc(sizeof(float) * nf), *y2 = dmalloc(sizeof(float) * nf),
          *y3 = dmalloc(sizeof(float) * nf), *g = dmalloc(sizeof(float) * nf), *u = dmalloc(sizeof(float) * nf),
          *xb = dmalloc(sizeof(float) * nf * 3);
    uint32_t *xf = dmalloc(sizeof(uint32_t) * nf), *hf = dmalloc(sizeof(uint32_t) * nf);
    float *hx = xmalloc(sizeof(float) * nf);
    for (size_t i = 0; i < nf; i++) hx[i] = 0.5f * nrand();
    CU(cudaMemcpy(x, hx, sizeof(float) * nf, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(g, hx, sizeof(float) * nf, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(u, hx, sizeof(float) * nf, cudaMemcpyHostToDevice));
    free(hx);
    CHECK(cuk_frag16(xf, x, NULL, NULL, 4096, 4096, 8, s) == 0 && cuk_frag16(hf, x, NULL, NULL, 11008, 11008, 8, s) == 0,
          "bench frag: %s", gptq_last_error());
    CU(cudaStreamSynchronize(s));
    /* (kernel: 0 tensor core, 1 fragments, 2 fragments + separate conversions; depth; warps) */
    /* kind 4: fragments at the default shape without the persistent form (kind 1 at depth 0,
     * warps 0: the default, with it) */
    static const int cfg[][3] = {{1, 0, 0}, {4, 0, 0}, {0, 0, 0}, {2, 0, 0}, {1, 1, 16}, {1, 1, 8}, {1, 0, 0}, {4, 0, 0}};
    for (int c = 0; c < (int)(sizeof cfg / sizeof cfg[0]); c++) {
        const int frag = cfg[c][0] != 0, conv = cfg[c][0] == 2;
        cuq_frag_set_multi(cfg[c][0] != 4, 0);
        if (frag) cuq_frag_set(cfg[c][1], cfg[c][2]);
        for (int which = 0; which < SEQ_N; which++)
            for (int T = 1; T <= 8; T *= 2) {
                if (which != SEQ_ALL && T > 1) break;
                cudaGraph_t gr;
                cudaGraphExec_t ge;
                CU(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
                int rc = capture_seq(q, frag, conv, which, T, x, y, y2, y3, g, u, xb, xf, hf, s);
                CU(cudaStreamEndCapture(s, &gr));
                CHECK(rc == 0, "bench frag capture: %s", gptq_last_error());
                CU(cudaGraphInstantiate(&ge, gr, 0));
                const float ms = time_graph(ge, s, 15);
                const double bw = bytes[which] / (ms * 1e-3);
                printf("bench frag %s T=%d %s: %.3f ms, %.1f GB/s = %.1f%% of copy\n", seq_name[which], T,
                       !frag ? "tensor-core kernel        " : conv ? "fragments + conversions   "
                               : cfg[c][0] == 4 ? "fragments, no persistent  "
                               : "fragments                 ",
                       ms, bw * 1e-9, 100.0 * bw / copy_bw);
                if (frag) printf("bench frag   (depth %d, warps %d; 0 = default)\n", cfg[c][1], cfg[c][2]);
                cudaGraphExecDestroy(ge), cudaGraphDestroy(gr);
            }
    }
    cuq_frag_set(0, 0);
    cuq_frag_set_multi(-1, 0);
    for (int i = 0; i < NL * NLIN; i++) cuq_free(&q[i]);
    free(q);
    cudaFree(x), cudaFree(y), cudaFree(y2), cudaFree(y3), cudaFree(g), cudaFree(u), cudaFree(xb), cudaFree(xf), cudaFree(hf);
}

/* Where a 4-bit 7B decode step goes (T = 1, cache at position 576 of 640): the 32 layers'
 * kernels as the model issues them with the fragment-order GEMV, and with parts left out. */
static void bench_step(double copy_bw, cudaStream_t s) {
    cuq_gemv_set_fp32(0);
    cuq_gemv_set_mma(1);
    cuq_frag_set(0, 0);
    const int dim = 4096, hid = 11008, nh = 32, hd = 128, max_seq = 640, pos = 576;
    cuq_layer *q = xcalloc(NL * NLIN, sizeof(cuq_layer));
    double bytes = 0;
    for (int l = 0; l < NL; l++)
        for (int j = 0; j < NLIN; j++) {
            random_cuq(&q[l * NLIN + j], shp7b[j][0], shp7b[j][1], 4, 128, 0, (uint64_t)(l * NLIN + j) * 7919u + 1);
            bytes += (double)cuq_stream_bytes(&q[l * NLIN + j]);
        }
    const size_t kv = (size_t)max_seq * dim;
    uint16_t *kc = dmalloc(sizeof(uint16_t) * kv * NL), *vc = dmalloc(sizeof(uint16_t) * kv * NL);
    CHECK(cuk_fill_f16(kc, (int64_t)(kv * NL), 5, 0.5f, s) == 0 && cuk_fill_f16(vc, (int64_t)(kv * NL), 6, 0.5f, s) == 0, "kv");
    bytes += 2.0 * 2.0 * NL * (double)pos * dim;
    float *x = dmalloc(sizeof(float) * hid), *xn = dmalloc(sizeof(float) * hid), *qv = dmalloc(sizeof(float) * dim),
          *kv_k = dmalloc(sizeof(float) * dim), *kv_v = dmalloc(sizeof(float) * dim), *att = dmalloc(sizeof(float) * dim),
          *out = dmalloc(sizeof(float) * dim), *w = dmalloc(sizeof(float) * dim);
    uint32_t *xf = dmalloc(sizeof(uint32_t) * hid), *af = dmalloc(sizeof(uint32_t) * hid), *hf = dmalloc(sizeof(uint32_t) * hid);
    float *part = dmalloc(sizeof(float) * (size_t)cuk_attention_split_floats(1, max_seq, nh, hd));
    CU(cudaMemset(part, 0, sizeof(float) * (size_t)cuk_attention_split_floats(1, max_seq, nh, hd)));
    float *inv_freq = dmalloc(sizeof(float) * hd / 2);
    {
        float hv[64], *hx = xmalloc(sizeof(float) * hid);
        for (int i = 0; i < hd / 2; i++) hv[i] = powf(10000.0f, -2.0f * i / hd);
        CU(cudaMemcpy(inv_freq, hv, sizeof hv, cudaMemcpyHostToDevice));
        for (int i = 0; i < hid; i++) hx[i] = 0.3f * nrand();
        CU(cudaMemcpy(x, hx, sizeof(float) * hid, cudaMemcpyHostToDevice));
        for (int i = 0; i < dim; i++) hx[i] = 1.0f;
        CU(cudaMemcpy(w, hx, sizeof(float) * dim, cudaMemcpyHostToDevice));
        free(hx);
    }
    int *pos_d = dmalloc(sizeof(int));
    CU(cudaMemcpy(pos_d, &pos, sizeof(int), cudaMemcpyHostToDevice));
    CHECK(cuk_frag16(xf, x, NULL, NULL, dim, dim, 1, s) == 0 && cuk_frag16(hf, x, NULL, NULL, hid, hid, 1, s) == 0 &&
              cuk_frag16(af, x, NULL, NULL, dim, dim, 1, s) == 0,
          "step: %s", gptq_last_error());
    CU(cudaStreamSynchronize(s));
    /* parts: 1 GEMVs, 2 attention, 4 norms */
    static const struct { int parts; const char *what; } v[] = {
        {1 | 2 | 4, "GEMVs + attention + norm kernels (the model)             "},
        {1 | 4, "GEMVs + norm kernels                                     "},
        {1 | 2, "GEMVs + attention                                        "},
        {1, "GEMVs                                                    "},
        {2, "attention                                                "},
        {4, "norm kernels                                             "},
        {2 | 4, "attention + norm kernels                                 "},
    };
    for (int c = 0; c < (int)(sizeof v / sizeof v[0]); c++) {
        const int P = v[c].parts;
        cudaGraph_t gr;
        cudaGraphExec_t ge;
        CU(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        int rc = 0;
        for (int l = 0; l < NL; l++) {
            cuq_layer *L = q + l * NLIN;
            const cuq_layer *qkv[3] = {&L[0], &L[1], &L[2]}, *o = &L[3], *dn = &L[6];
            float *qkv_y[3] = {qv, kv_k, kv_v};
            if (P & 1) rc |= cuq_gemv_frag(qkv, qkv_y, 3, xf, 1, s);
            if (P & 2)
                rc |= cuk_rope_attention_decode(qv, kv_k, kv_v, kc + kv * l, vc + kv * l, inv_freq, att, (P & 1) ? af : NULL,
                                                part, pos_d, 1, max_seq, nh, nh, hd, s);
            if (P & 1) rc |= cuq_gemv_frag(&o, &out, 1, af, 1, s);
            if (P & 4) rc |= cuk_add_rmsnorm(xn, x, out, w, 1, dim, 1e-5f, xf, s);
            if (P & 1) rc |= cuq_gemv_swiglu_frag(&L[4], &L[5], hf, NULL, xf, 1, s);
            if (P & 1) rc |= cuq_gemv_frag(&dn, &out, 1, hf, 1, s);
            if (P & 4) rc |= cuk_add_rmsnorm(xn, x, out, w, 1, dim, 1e-5f, xf, s);
        }
        CU(cudaStreamEndCapture(s, &gr));
        CHECK(rc == 0, "bench step capture: %s", gptq_last_error());
        CU(cudaGraphInstantiate(&ge, gr, 0));
        const float ms = time_graph(ge, s, 15);
        printf("bench step %s: %.3f ms per token (%.1f%% of copy bandwidth for weights + KV)\n", v[c].what, ms,
               100.0 * bytes / (ms * 1e-3) / copy_bw);
        cudaGraphExecDestroy(ge), cudaGraphDestroy(gr);
    }
    for (int i = 0; i < NL * NLIN; i++) cuq_free(&q[i]);
    free(q);
    cudaFree(kc), cudaFree(vc), cudaFree(x), cudaFree(xn), cudaFree(qv), cudaFree(kv_k), cudaFree(kv_v), cudaFree(att);
    cudaFree(out), cudaFree(w), cudaFree(xf), cudaFree(af), cudaFree(hf), cudaFree(part), cudaFree(inv_freq);
    cudaFree(pos_d);
}

/* One layer's 7 prefill GEMMs at T tokens: 4-bit dequantize + cuBLAS vs cuBLAS on fp16 weights. */
static void bench_prefill(int T, cudaStream_t s) {
    cuq_layer q[NLIN];
    uint16_t *w[NLIN];
    for (int j = 0; j < NLIN; j++) {
        random_cuq(&q[j], shp7b[j][0], shp7b[j][1], 4, 128, 0, 100 + (uint64_t)j);
        w[j] = dmalloc(sizeof(uint16_t) * (size_t)(shp7b[j][0] * shp7b[j][1]));
        CHECK(cuk_fill_f16(w[j], shp7b[j][0] * shp7b[j][1], 7 + (uint64_t)j, 0.05f, s) == 0, "fill");
    }
    float *x = dmalloc(sizeof(float) * (size_t)T * 11008), *y = dmalloc(sizeof(float) * (size_t)T * 11008);
    uint16_t *x16 = dmalloc(sizeof(uint16_t) * (size_t)T * 11008), *w16 = dmalloc(sizeof(uint16_t) * 11008 * 4096);
    {
        float *hx = xmalloc(sizeof(float) * (size_t)T * 11008);
        for (size_t i = 0; i < (size_t)T * 11008; i++) hx[i] = (float)((int64_t)(next_u64() >> 40) - (1 << 23)) * 0x1p-23f;
        CU(cudaMemcpy(x, hx, sizeof(float) * (size_t)T * 11008, cudaMemcpyHostToDevice));
        free(hx);
    }
    double flops = 0;
    for (int j = 0; j < NLIN; j++) flops += 2.0 * T * (double)(shp7b[j][0] * shp7b[j][1]);
    for (int variant = 0; variant < 2; variant++) {
        cudaGraph_t g;
        cudaGraphExec_t ge;
        CU(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        int rc = 0;
        for (int j = 0; j < NLIN; j++)
            rc |= variant ? cuh_gemm(blas, w[j], shp7b[j][0], shp7b[j][1], y, x, T, x16, s)
                          : cuq_gemm(blas, &q[j], y, x, T, w16, x16, s);
        CU(cudaStreamEndCapture(s, &g));
        CHECK(rc == 0, "bench capture: %s", gptq_last_error());
        CU(cudaGraphInstantiate(&ge, g, 0));
        float ms = time_graph(ge, s, 15);
        printf("bench prefill T=%d, one 7B layer's 7 GEMMs, %s: %.3f ms, %.1f TFLOP/s\n", T,
               variant ? "cuBLAS fp16 weights        " : "4-bit g128 dequant + cuBLAS", ms, flops / (ms * 1e-3) * 1e-12);
        cudaGraphExecDestroy(ge), cudaGraphDestroy(g);
    }
    for (int j = 0; j < NLIN; j++) cuq_free(&q[j]), cudaFree(w[j]);
    cudaFree(x), cudaFree(y), cudaFree(x16), cudaFree(w16);
}

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, %.0f MiB\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1048576.0);
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasCreate failed\n");
        return 1;
    }
    test_random_layers();
    test_multi();
    test_silu();
    test_frag();
    test_dense();
    test_embed_norm();
    if (getenv("GPTQ_BENCH")) {
        cudaStream_t s;
        CU(cudaStreamCreate(&s));
        cublasSetStream(blas, s);
        double bw = copy_bandwidth(s);
        if (strcmp(getenv("GPTQ_BENCH"), "frag") == 0) { /* the fragment-order GEMV against the tensor-core one */
            bench_step(bw, s);
            bench_frag(bw, s);
            cudaStreamDestroy(s);
            cublasDestroy(blas);
            return check_done();
        }
        if (strcmp(getenv("GPTQ_BENCH"), "tiled") == 0) { /* the qk against the tile layout, L2 prefetch */
            /* (tiled, prefetch, depth, min blocks, act-order) */
            static const int tcfg[][5] = {{0, 0, 2, 3, 0}, {1, 0, 2, 3, 0}, {1, 1, 2, 3, 0}, {1, 0, 1, 3, 0}, {1, 0, 2, 1, 0},
                                          {1, 0, 4, 1, 0}, {1, 0, 4, 3, 0}, {1, 0, 1, 4, 0}, {0, 0, 2, 3, 1}, {1, 0, 2, 3, 1}};
            for (int i = 0; i < (int)(sizeof tcfg / sizeof tcfg[0]); i++) {
                char tag[64];
                snprintf(tag, sizeof tag, " [prefetch %d, depth %d, min blocks %d]", tcfg[i][1], tcfg[i][2], tcfg[i][3]);
                bench_tiled = tcfg[i][0];
                cuq_gemv_set_prefetch(tcfg[i][1]);
                cuq_gemv_set_depth(tcfg[i][2], 1, tcfg[i][3], 0, 8);
                bench_decode_linears(4, tcfg[i][4], bw, tag, s);
            }
            bench_tiled = 2;
            cudaStreamDestroy(s);
            cublasDestroy(blas);
            return check_done();
        }
        /* programmatic dependent launch off / on, codes in flight per warp, activations in
         * shared memory or not (the first line is the kernel as it was before all three) */
        /* (pdl, depth, activations in smem, min blocks, bulk copies, warps) */
        static const int mma_cfg[][6] = {{0, 1, 0, 1, 0, 8}, {1, 2, 1, 1, 0, 8}, {1, 2, 1, 3, 0, 8}, {1, 1, 0, 3, 0, 8},
                                         {1, 1, 1, 3, 0, 8}, {1, 4, 1, 3, 0, 8}, {1, 2, 1, 3, 1, 8}, {1, 2, 1, 1, 1, 4},
                                         {1, 2, 1, 3, 1, 4}, {1, 2, 1, 3, 0, 4}, {1, 1, 1, 1, 0, 4}};
        for (int i = 0; i < (int)(sizeof mma_cfg / sizeof mma_cfg[0]); i++) {
            char tag[96];
            snprintf(tag, sizeof tag, " [pdl %d, depth %d, acts %s, min blocks %d, bulk %d, warps %d]", mma_cfg[i][0],
                     mma_cfg[i][1], mma_cfg[i][2] ? "smem" : "global", mma_cfg[i][3], mma_cfg[i][4], mma_cfg[i][5]);
            cuk_set_pdl(mma_cfg[i][0]);
            cuq_gemv_set_depth(mma_cfg[i][1], mma_cfg[i][2], mma_cfg[i][3], mma_cfg[i][4], mma_cfg[i][5]);
            bench_decode_linears(4, 0, bw, tag, s);
        }
        static const int h_cfg[][2] = {{0, 1}, {1, 4}, {0, 4}};
        for (int i = 0; i < (int)(sizeof h_cfg / sizeof h_cfg[0]); i++) {
            char tag[64];
            snprintf(tag, sizeof tag, " [pdl %d, depth %d]", h_cfg[i][0], h_cfg[i][1]);
            cuk_set_pdl(h_cfg[i][0]);
            cuh_gemv_set_depth(h_cfg[i][1]);
            bench_decode_linears(0, 0, bw, tag, s);
        }
        cuk_set_pdl(1), cuq_gemv_set_depth(2, 1, 3, 0, 8), cuh_gemv_set_depth(4); /* the defaults */
        bench_decode_linears(4, 1, bw, "", s);
        gemv_fp32 = 1;
        bench_decode_linears(4, 0, bw, "", s);
        gemv_fp32 = 0, gemv_mma = 0;
        bench_decode_linears(4, 0, bw, "", s);
        gemv_mma = 1;
        bench_decode_linears(2, 0, bw, "", s);
        bench_decode_linears(3, 0, bw, "", s);
        bench_decode_linears(8, 0, bw, "", s);
        bench_prefill(2048, s);
        bench_prefill(512, s);
        copy_bandwidth(s);
        cudaStreamDestroy(s);
    }
    cublasDestroy(blas);
    return check_done();
}
#endif
