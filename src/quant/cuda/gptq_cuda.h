/* GPTQ of one Linear on the GPU: the same algorithm, order and results as quant/gptq.h
 * (whose comment describes it), with the work on the device:
 *   - H's diagonal, dead inputs and the act-order permutation (sorted on the host with
 *     gptq_column_order, so the order is the CPU's);
 *   - U, the upper Cholesky factor of (H + λI)⁻¹, in double through cuSOLVER (potrf of the
 *     reversed matrix, then trtri: gptq.c's route), with the same damping retries;
 *   - the column loop: one kernel per 128-column block (a warp per row, the Hinv block in
 *     shared memory, group grids found when a group starts), then the lazy update of the
 *     remaining columns with one cuBLAS SGEMM (fp32, as OpenBLAS's on the CPU);
 *   - the error figures (loss, err_sq, energy = tr(W H Wᵀ) through SGEMM).
 * The quantized layer (codes, scales, zeros, g_idx) comes back to the host for packing; the
 * dequantized weight stays on the device (and comes back too when asked).
 * Not supported here: grid hooks (GGUF block formats) and blocks wider than GQ_MAX_BLOCK. */
#ifndef GPTQ_QUANT_CUDA_GPTQ_CUDA_H
#define GPTQ_QUANT_CUDA_GPTQ_CUDA_H

#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include "quant/gptq.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Handles, stream and scratch of GPU GPTQ (grows to the largest layer seen). */
typedef struct {
    cudaStream_t stream;
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    void *scratch;       /* device scratch */
    size_t scratch_size;
    double *sums;        /* device (4) reduction results */
    int *flag;           /* device (1) counters */
    size_t min_free;     /* least free device memory seen by gptq_cuda_note_mem (SIZE_MAX: none yet) */
    size_t total_mem;    /* the device's memory */
} gptq_cuda;

/* 0, or -1 with an error (no GPU, driver too old, out of memory). */
int gptq_cuda_init(gptq_cuda *g);
void gptq_cuda_free(gptq_cuda *g);
/* Device scratch of at least `bytes` (grown as needed, contents not kept), or NULL + error. */
void *gptq_cuda_scratch(gptq_cuda *g, size_t bytes);
/* Samples the free device memory (cudaMemGetInfo) into min_free: called where use peaks. */
void gptq_cuda_note_mem(gptq_cuda *g);

/* What GPTQ derives from H alone (gptq.h's gptq_hinv), with U on the device. */
typedef struct {
    int64_t n;
    int act_order;
    int32_t *perm;        /* host (n) processing order */
    unsigned char *dead;  /* host (n) */
    int32_t *d_perm;      /* device (n) */
    unsigned char *d_dead;/* device (n) */
    float *d_U;           /* device (n, n) upper Cholesky factor of (H + λI)⁻¹, processing order */
    double lambda, damp_used;
    int damp_retries, n_dead;
} gptq_cuda_hinv;

/* Prepares d_h (n, n) device fp32 symmetric-full.  `what` names the Hessian in errors
 * (non-finite values, not positive definite).  Free with gptq_cuda_hinv_free. */
int gptq_cuda_prepare(gptq_cuda *g, const float *d_h, int64_t n, int act_order, float damp, const char *what,
                      gptq_cuda_hinv *hv);
void gptq_cuda_hinv_free(gptq_cuda_hinv *hv);

/* Quantizes d_w (out, n) device fp32 (original column order) with a prepared H as
 * gptq_quantize_prepared does: res->q holds codes, scales, zeros, g_idx on the host (and wq
 * when host_wq), res->perm, loss, err_sq, energy/rel_err (want_rel_err; d_h is read only
 * then), damping and dead figures.  d_wq (out, n) device receives the dequantized weight.
 * *weight_se (may be NULL) = Σ (w − ŵ)² against the original w.  0, or -1 with an error. */
int gptq_cuda_quantize(gptq_cuda *g, const float *d_w, const float *d_h, int64_t out, const gptq_cuda_hinv *hv,
                       const gptq_params *p, float *d_wq, int host_wq, gptq_result *res, double *weight_se);

/* The same for host data, for tests: h (in, in), w (out, in) host fp32. */
int gptq_cuda_quantize_host(gptq_cuda *g, const float *w, const float *h, int64_t out, int64_t in, const gptq_params *p,
                            gptq_result *res);

/* A cuSOLVER status as a library error ("<what>: cuSOLVER status N"), -1; 0 if ok. */
int cusolver_check(cusolverStatus_t st, const char *what);

#ifdef __cplusplus
}
#endif

#endif
