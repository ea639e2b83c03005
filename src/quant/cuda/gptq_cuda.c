#include "quant/cuda/gptq_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cuda/cuq.h"
#include "quant/cuda/gptq_kernels.h"

#define GPTQ_MAX_RETRIES 3 /* as gptq.c */

int cusolver_check(cusolverStatus_t st, const char *what) {
    if (st == CUSOLVER_STATUS_SUCCESS) return 0;
    return gptq_fail("%s: cuSOLVER status %d", what, (int)st);
}

void gptq_cuda_note_mem(gptq_cuda *g) {
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) == cudaSuccess) {
        if (f < g->min_free) g->min_free = f;
        g->total_mem = t;
    }
}

int gptq_cuda_init(gptq_cuda *g) {
    memset(g, 0, sizeof *g);
    g->min_free = (size_t)-1;
    int dev = 0;
    if (cu_check(cudaGetDeviceCount(&dev), "looking for a GPU")) return -1;
    if (dev < 1) return gptq_fail("CUDA: no GPU found");
    if (cu_check(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), "stream")) return -1;
    if (cublas_check(cublasCreate(&g->blas), "cuBLAS") || cublas_check(cublasSetStream(g->blas, g->stream), "cuBLAS") ||
        cusolver_check(cusolverDnCreate(&g->solver), "cuSOLVER") ||
        cusolver_check(cusolverDnSetStream(g->solver, g->stream), "cuSOLVER") ||
        cu_check(cudaMalloc((void **)&g->sums, sizeof(double) * 4), "allocation") ||
        cu_check(cudaMalloc((void **)&g->flag, sizeof(int)), "allocation")) {
        gptq_cuda_free(g);
        return -1;
    }
    return 0;
}

void gptq_cuda_free(gptq_cuda *g) {
    if (g->solver) cusolverDnDestroy(g->solver);
    if (g->blas) cublasDestroy(g->blas);
    cudaFree(g->scratch);
    cudaFree(g->sums);
    cudaFree(g->flag);
    if (g->stream) cudaStreamDestroy(g->stream);
    memset(g, 0, sizeof *g);
}

void *gptq_cuda_scratch(gptq_cuda *g, size_t bytes) {
    if (bytes <= g->scratch_size) return g->scratch;
    if (cu_check(cudaStreamSynchronize(g->stream), "sync")) return NULL;
    cudaFree(g->scratch);
    g->scratch = NULL;
    g->scratch_size = 0;
    if (cu_check(cudaMalloc(&g->scratch, bytes), "allocation (GPTQ scratch)")) return NULL;
    g->scratch_size = bytes;
    gptq_cuda_note_mem(g);
    return g->scratch;
}

void gptq_cuda_hinv_free(gptq_cuda_hinv *hv) {
    free(hv->perm);
    free(hv->dead);
    cudaFree(hv->d_perm);
    cudaFree(hv->d_dead);
    cudaFree(hv->d_U);
    memset(hv, 0, sizeof *hv);
}

/* U from the reversed, damped Hessian: potrf (retrying with more damping) and trtri in double. */
static int hinv_factor(gptq_cuda *g, const float *d_h, const float *d_diag, gptq_cuda_hinv *hv, double mean_diag,
                       float damp, const char *what) {
    const int64_t n = hv->n;
    double *D = NULL, *work = NULL;
    void *hwork = NULL;
    int rc = -1, lwork = 0, info = 0;
    if (cu_check(cudaMalloc((void **)&D, sizeof(double) * (size_t)(n * n)), "allocation (Cholesky)")) goto out;
    if (cusolver_check(cusolverDnDpotrf_bufferSize(g->solver, CUBLAS_FILL_MODE_UPPER, (int)n, D, (int)n, &lwork), "potrf"))
        goto out;
    size_t dws = 0, hws = 0;
    if (cusolver_check(cusolverDnXtrtri_bufferSize(g->solver, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, D,
                                                   n, &dws, &hws),
                       "trtri"))
        goto out;
    size_t wbytes = sizeof(double) * (size_t)lwork;
    if (dws > wbytes) wbytes = dws;
    if (cu_check(cudaMalloc((void **)&work, wbytes ? wbytes : 8), "allocation (Cholesky)")) goto out;
    hwork = hws ? xmalloc(hws) : NULL;
    gptq_cuda_note_mem(g);
    double d = damp;
    int attempt;
    for (attempt = 0; attempt <= GPTQ_MAX_RETRIES; attempt++) {
        if (attempt > 0) d = d == 0.0 ? 0.01 : d * 10.0;
        if (gq_build_reversed(D, d_h, d_diag, hv->d_perm, n, d * mean_diag, g->stream)) goto out;
        /* column-major upper R (D = RᵀR) is the row-major lower L of gptq.c (D = L Lᵀ) */
        if (cusolver_check(cusolverDnDpotrf(g->solver, CUBLAS_FILL_MODE_UPPER, (int)n, D, (int)n, work, lwork, g->flag),
                           "potrf"))
            goto out;
        if (cu_check(cudaMemcpyAsync(&info, g->flag, sizeof info, cudaMemcpyDeviceToHost, g->stream), "copy") ||
            cu_check(cudaStreamSynchronize(g->stream), "potrf"))
            goto out;
        if (info == 0) break;
        if (info < 0) {
            gptq_fail("gptq: potrf rejected argument %d", -info);
            goto out;
        }
    }
    if (info != 0) {
        gptq_fail("%s: Hessian (%lld x %lld) is not positive definite even with damping %g of its mean diagonal "
                  "(%d retries from %g)",
                  what, (long long)n, (long long)n, d, GPTQ_MAX_RETRIES, (double)damp);
        goto out;
    }
    /* row-major L⁻¹ */
    if (cusolver_check(cusolverDnXtrtri(g->solver, CUBLAS_FILL_MODE_UPPER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_64F, D, n, work,
                                        wbytes, hwork, hws, g->flag),
                       "trtri"))
        goto out;
    if (cu_check(cudaMemcpyAsync(&info, g->flag, sizeof info, cudaMemcpyDeviceToHost, g->stream), "copy") ||
        cu_check(cudaStreamSynchronize(g->stream), "trtri"))
        goto out;
    if (info != 0) {
        gptq_fail("%s: Cholesky factor of the Hessian is singular (trtri info %d)", what, info);
        goto out;
    }
    if (cu_check(cudaMalloc((void **)&hv->d_U, sizeof(float) * (size_t)(n * n)), "allocation (Hinv)")) goto out;
    if (gq_extract_u(hv->d_U, D, n, g->stream) || cu_check(cudaStreamSynchronize(g->stream), "Hinv")) goto out;
    hv->damp_retries = attempt;
    hv->damp_used = d;
    hv->lambda = d * mean_diag;
    rc = 0;
out:
    cudaFree(D);
    cudaFree(work);
    free(hwork);
    return rc;
}

int gptq_cuda_prepare(gptq_cuda *g, const float *d_h, int64_t n, int act_order, float damp, const char *what,
                      gptq_cuda_hinv *hv) {
    memset(hv, 0, sizeof *hv);
    if (!(damp >= 0.0f) || !isfinite(damp)) return gptq_fail("gptq: bad damping %g", (double)damp);
    if (n <= 0 || n > 65535) return gptq_fail("%s: %lld input features (the GPU path takes 1..65535)", what, (long long)n);
    hv->n = n;
    hv->act_order = act_order;
    float *diag = xmalloc(sizeof(float) * (size_t)n), *d_diag = NULL;
    hv->dead = xmalloc((size_t)n);
    hv->perm = xmalloc(sizeof(int32_t) * (size_t)n);
    int bad = 0, rc = -1;
    if (cu_check(cudaMalloc((void **)&d_diag, sizeof(float) * (size_t)n), "allocation") ||
        cu_check(cudaMemsetAsync(g->flag, 0, sizeof(int), g->stream), "sync") ||
        gq_diag_check(d_h, n, d_diag, g->flag, g->stream) ||
        cu_check(cudaMemcpyAsync(diag, d_diag, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost, g->stream), "copy") ||
        cu_check(cudaMemcpyAsync(&bad, g->flag, sizeof bad, cudaMemcpyDeviceToHost, g->stream), "copy") ||
        cu_check(cudaStreamSynchronize(g->stream), "Hessian check"))
        goto out;
    if (bad) {
        gptq_fail("%s: calibration activations are not finite (NaN/Inf)", what);
        goto out;
    }
    double mean_diag = 0.0;
    for (int64_t i = 0; i < n; i++) {
        hv->dead[i] = diag[i] == 0.0f;
        if (hv->dead[i]) {
            diag[i] = 1.0f;
            hv->n_dead++;
        }
        mean_diag += diag[i];
    }
    mean_diag /= (double)n;
    gptq_column_order(diag, n, act_order, hv->perm);
    if (cu_check(cudaMalloc((void **)&hv->d_perm, sizeof(int32_t) * (size_t)n), "allocation") ||
        cu_check(cudaMalloc((void **)&hv->d_dead, (size_t)n), "allocation") ||
        cu_check(cudaMemcpyAsync(hv->d_perm, hv->perm, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice, g->stream), "copy") ||
        cu_check(cudaMemcpyAsync(hv->d_dead, hv->dead, (size_t)n, cudaMemcpyHostToDevice, g->stream), "copy") ||
        cu_check(cudaMemcpyAsync(d_diag, diag, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice, g->stream), "copy"))
        goto out;
    rc = hinv_factor(g, d_h, d_diag, hv, mean_diag, damp, what);
out:
    cudaStreamSynchronize(g->stream);
    cudaFree(d_diag);
    free(diag);
    if (rc) gptq_cuda_hinv_free(hv);
    return rc;
}

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

int gptq_cuda_quantize(gptq_cuda *g, const float *d_w, const float *d_h, int64_t out, const gptq_cuda_hinv *hv,
                       const gptq_params *p, float *d_wq, int host_wq, gptq_result *res, double *weight_se) {
    memset(res, 0, sizeof *res);
    const int64_t n = hv->n;
    if (p->grid_hook) return gptq_fail("gptq (GPU): block-format grids (GGUF) are not supported on the GPU");
    if (quant_check_bits(p->bits)) return gptq_fail_context("gptq");
    if (out <= 0) return gptq_fail("gptq: bad weight shape (%lld, %lld)", (long long)out, (long long)n);
    if (p->group_size == 0 || p->group_size < -1)
        return gptq_fail("gptq: bad group size %d (expected -1 or > 0)", p->group_size);
    if (p->block_size <= 0 || p->block_size > GQ_MAX_BLOCK)
        return gptq_fail("gptq (GPU): block size %d is not supported (1..%d)", p->block_size, GQ_MAX_BLOCK);
    if (p->act_order != hv->act_order)
        return gptq_fail("gptq: act-order %d does not match the prepared Hessian's %d", p->act_order, hv->act_order);
    const gq_grid grid = {p->bits, p->sym, p->v1_zero, p->mse};
    const int grouped = p->group_size > 0;
    const int64_t gs = grouped ? p->group_size : n;
    const int is_static = grouped && p->static_groups;
    const int64_t B = p->block_size < n ? p->block_size : n;
    quant_layer *q = &res->q;
    quant_layer_alloc(q, out, n, p->bits, p->group_size, host_wq);
    const int64_t G = q->groups;
    /* scratch: Wp, codes, scales, zeros, E, rowloss, then the energy product T */
    const int64_t trows = out < 4096 ? out : 4096;
    size_t o_wp = 0, o_codes = o_wp + align256(sizeof(float) * (size_t)(out * n));
    size_t o_sc = o_codes + align256((size_t)(out * n)), o_z = o_sc + align256(sizeof(float) * (size_t)(G * out));
    size_t o_e = o_z + align256(sizeof(int32_t) * (size_t)(G * out)), o_l = o_e + align256(sizeof(float) * (size_t)(out * B));
    size_t o_t = o_l + align256(sizeof(double) * (size_t)out), total = o_t + (p->want_rel_err ? sizeof(float) * (size_t)(trows * n) : 0);
    char *base = gptq_cuda_scratch(g, total);
    if (!base) goto fail;
    float *Wp = (float *)(base + o_wp), *sc = (float *)(base + o_sc), *E = (float *)(base + o_e), *T = (float *)(base + o_t);
    uint8_t *codes = (uint8_t *)(base + o_codes);
    int32_t *zs = (int32_t *)(base + o_z);
    double *rowloss = (double *)(base + o_l);
    cudaStream_t s = g->stream;
    int bad = 0;
    if (cu_check(cudaMemsetAsync(g->flag, 0, sizeof(int), s), "sync") || gq_count_nonfinite(d_w, out * n, g->flag, s) ||
        cu_check(cudaMemcpyAsync(&bad, g->flag, sizeof bad, cudaMemcpyDeviceToHost, s), "copy") ||
        cu_check(cudaStreamSynchronize(s), "gptq"))
        goto fail;
    if (bad) {
        gptq_fail("gptq: weight has non-finite values");
        goto fail;
    }
    /* 1. whole-row grid from the original W; 3. static grids from the dead-zeroed W */
    if (!grouped && gq_find_params(d_w, NULL, out, n, n, 1, grid, sc, zs, s)) goto fail;
    if (is_static && gq_find_params(d_w, hv->d_dead, out, n, gs, G, grid, sc, zs, s)) goto fail;
    if (gq_permute(Wp, d_w, hv->d_perm, hv->d_dead, out, n, s)) goto fail;
    if (cu_check(cudaMemsetAsync(rowloss, 0, sizeof(double) * (size_t)out, s), "sync")) goto fail;
    /* 7. the column loop */
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n, cnt = i2 - i1;
        if (gq_block(Wp, hv->d_U, out, n, i1, (int)cnt, hv->d_perm, E, codes, d_wq, sc, zs, rowloss, grid, grouped,
                     is_static, gs, s))
            goto fail;
        if (i2 < n) {
            /* W[:, i2:] -= Err (out, cnt) · U[i1:i2, i2:] (cnt, n - i2), in cuBLAS's column-major terms */
            const float m1 = -1.0f, one = 1.0f;
            if (cublas_check(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(n - i2), (int)out, (int)cnt, &m1,
                                         hv->d_U + i1 * n + i2, (int)n, E, (int)cnt, &one, Wp + i2, (int)n),
                             "gptq: lazy update"))
                goto fail;
        }
    }
    /* error figures: sums[0] ‖ΔW‖² (dead-zeroed W), [1] ‖W − Ŵ‖², [2] Σ rowloss, [3] tr(W H Wᵀ) */
    if (cu_check(cudaMemsetAsync(g->sums, 0, sizeof(double) * 4, s), "sync") ||
        gq_error_sums(d_w, d_wq, hv->d_dead, rowloss, out, n, g->sums, s))
        goto fail;
    if (p->want_rel_err)
        for (int64_t r0 = 0; r0 < out; r0 += trows) {
            const int64_t rc = out - r0 < trows ? out - r0 : trows;
            const float one = 1.0f, zero = 0.0f;
            /* T (rc, n) = W[r0:] · H */
            if (cublas_check(cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)rc, (int)n, &one, d_h, (int)n,
                                         d_w + r0 * n, (int)n, &zero, T, (int)n),
                             "gptq: energy") ||
                gq_dot(T, d_w + r0 * n, rc * n, g->sums + 3, s))
                goto fail;
        }
    double sums[4];
    if (cu_check(cudaMemcpyAsync(sums, g->sums, sizeof sums, cudaMemcpyDeviceToHost, s), "copy") ||
        cu_check(cudaMemcpyAsync(q->codes, codes, (size_t)(out * n), cudaMemcpyDeviceToHost, s), "copy") ||
        cu_check(cudaMemcpyAsync(q->scales, sc, sizeof(float) * (size_t)(G * out), cudaMemcpyDeviceToHost, s), "copy") ||
        cu_check(cudaMemcpyAsync(q->zeros, zs, sizeof(int32_t) * (size_t)(G * out), cudaMemcpyDeviceToHost, s), "copy") ||
        (host_wq &&
         cu_check(cudaMemcpyAsync(q->wq, d_wq, sizeof(float) * (size_t)(out * n), cudaMemcpyDeviceToHost, s), "copy")) ||
        cu_check(cudaStreamSynchronize(s), "gptq (GPU)"))
        goto fail;
    const int32_t *perm = hv->perm;
    for (int64_t j = 0; j < n; j++) {
        if (!grouped) q->g_idx[j] = 0;
        else if (is_static || !p->act_order) q->g_idx[j] = (int32_t)(j / gs);
        else q->g_idx[perm[j]] = (int32_t)(j / gs);
    }
    res->perm = xmalloc(sizeof(int32_t) * (size_t)n);
    memcpy(res->perm, perm, sizeof(int32_t) * (size_t)n);
    res->dead = hv->n_dead;
    res->damp_retries = hv->damp_retries;
    res->damp_used = hv->damp_used;
    res->lambda = hv->lambda;
    res->loss = sums[2] / 2.0;
    res->err_sq = 2.0 * res->loss - res->lambda * sums[0];
    if (res->err_sq < 0.0) res->err_sq = 0.0;
    res->energy = NAN;
    res->rel_err = NAN;
    if (p->want_rel_err) {
        res->energy = sums[3];
        res->rel_err = res->energy > 0 ? sqrt(res->err_sq / res->energy) : (res->err_sq == 0 ? 0.0 : INFINITY);
    }
    if (weight_se) *weight_se = sums[1];
    return 0;
fail:
    cudaStreamSynchronize(g->stream);
    gptq_result_free(res);
    return -1;
}

int gptq_cuda_quantize_host(gptq_cuda *g, const float *w, const float *h, int64_t out, int64_t in, const gptq_params *p,
                            gptq_result *res) {
    memset(res, 0, sizeof *res);
    float *d_w = NULL, *d_h = NULL, *d_wq = NULL;
    gptq_cuda_hinv hv;
    memset(&hv, 0, sizeof hv);
    int rc = -1;
    if (cu_check(cudaMalloc((void **)&d_w, sizeof(float) * (size_t)(out * in)), "allocation") ||
        cu_check(cudaMalloc((void **)&d_wq, sizeof(float) * (size_t)(out * in)), "allocation") ||
        cu_check(cudaMalloc((void **)&d_h, sizeof(float) * (size_t)(in * in)), "allocation") ||
        cu_check(cudaMemcpyAsync(d_w, w, sizeof(float) * (size_t)(out * in), cudaMemcpyHostToDevice, g->stream), "copy") ||
        cu_check(cudaMemcpyAsync(d_h, h, sizeof(float) * (size_t)(in * in), cudaMemcpyHostToDevice, g->stream), "copy"))
        goto out;
    if (gptq_cuda_prepare(g, d_h, in, p->act_order, p->damp, "gptq", &hv)) goto out;
    rc = gptq_cuda_quantize(g, d_w, d_h, out, &hv, p, d_wq, 1, res, NULL);
out:
    gptq_cuda_hinv_free(&hv);
    cudaFree(d_w);
    cudaFree(d_wq);
    cudaFree(d_h);
    return rc;
}
