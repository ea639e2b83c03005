/* CUDA kernels of GPU GPTQ (quant/cuda/gptq_kernels.cu), callable from C: the column loop,
 * the grid, the Hessian preparation around cuSOLVER, and the small element-wise kernels of
 * the calibration forward pass (the GEMMs are cuBLAS, driven from gptq_cuda.c and
 * pipeline_cuda.c).  All pointers are device memory; matrices are row-major.  Each
 * launcher returns 0, or -1 with an error (core/error.h) after a failed launch. */
#ifndef GPTQ_QUANT_CUDA_GPTQ_KERNELS_H
#define GPTQ_QUANT_CUDA_GPTQ_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The grid of quant/quantizer.h. */
typedef struct {
    int bits, sym, v1_zero, mse;
} gq_grid;

/* Most columns one column-loop kernel takes (its Hinv block lives in shared memory). */
#define GQ_MAX_BLOCK 128

/* ---- GPTQ ---- */

/* D (n, n) double = J (Hp + λI) J, Hp = H[perm][:, perm] with diag[] (dead entries 1) on the
 * diagonal, J the reversal (gptq.c's build_reversed). */
int gq_build_reversed(double *D, const float *h, const float *diag, const int32_t *perm, int64_t n, double lambda,
                      cudaStream_t s);
/* U (n, n) fp32 upper = the reversal of the column-major lower L⁻¹ in Linv (n, n):
 * U[i][j] = Linv[n-1-i][n-1-j] for i <= j, 0 below the diagonal. */
int gq_extract_u(float *U, const double *Linv, int64_t n, cudaStream_t s);
/* diag (n) = H's diagonal; *bad (device int) += the count of non-finite entries of h (n, n). */
int gq_diag_check(const float *h, int64_t n, float *diag, int *bad, cudaStream_t s);
/* Wp (out, n) = w's columns in processing order, dead inputs zeroed. */
int gq_permute(float *Wp, const float *w, const int32_t *perm, const unsigned char *dead, int64_t out, int64_t n,
               cudaStream_t s);
/* Grid of every row r and group g (groups of gs columns of x (out, n), the last shorter; gs = n for whole rows)
 * into scales/zeros[g * out + r]; dead (or NULL) columns read as 0. */
int gq_find_params(const float *x, const unsigned char *dead, int64_t out, int64_t n, int64_t gs, int64_t groups,
                   gq_grid g, float *scales, int32_t *zeros, cudaStream_t s);
/* One lazy-update block [i1, i1 + cnt) (cnt <= GQ_MAX_BLOCK) of the column loop: a warp per
 * row quantizes the block column by column exactly as gptq.c's block_rows (same grid and
 * rounding, fp32 without contraction), writing codes and wq (out, n) in original column
 * order, the errors E (out, cnt) and rowloss[r] += Σ (w − q)²/d².  grouped/is_static/gs
 * as in gptq.c; dynamic group grids are found from Wp when a group starts. */
int gq_block(const float *Wp, const float *U, int64_t out, int64_t n, int64_t i1, int cnt, const int32_t *perm,
             float *E, uint8_t *codes, float *wq, float *scales, int32_t *zeros, double *rowloss, gq_grid g, int grouped,
             int is_static, int64_t gs, cudaStream_t s);
/* sums[0] += Σ (w' − wq)² with w' dead-zeroed w, sums[1] += Σ (w − wq)², sums[2] += Σ rowloss; w, wq (out, n). */
int gq_error_sums(const float *w, const float *wq, const unsigned char *dead, const double *rowloss, int64_t out,
                  int64_t n, double *sums, cudaStream_t s);
/* *acc += Σ a ⊙ b over n elements (double accumulation). */
int gq_dot(const float *a, const float *b, int64_t n, double *acc, cudaStream_t s);

/* ---- Hessians ---- */

/* H (n, n) = scale · H with the upper triangle (row-major i <= j) mirrored to the lower. */
int gq_hessian_finalize(float *h, int64_t n, float scale, cudaStream_t s);

/* ---- forward pass pieces ----
 * Activations (void *, marked "act") are fp16, or fp32 when f32 is set. */

/* dst (n) fp32 from src in dtype 0 = F32, 1 = F16, 2 = BF16 (core/dtype.h's order). */
int gq_to_f32(float *dst, const void *src, int dtype, int64_t n, cudaStream_t s);
/* dst (n) fp16 from fp32. */
int gq_f32_to_f16(uint16_t *dst, const float *src, int64_t n, cudaStream_t s);
/* out (rows, dim) act = x / rms(x) · w (rows of x fp32). */
int gq_rmsnorm(void *out, int f32, const float *x, const float *w, int64_t rows, int dim, float eps, cudaStream_t s);
/* y (rows, out) += b (out). */
int gq_add_bias(float *y, const float *b, int64_t rows, int64_t out, cudaStream_t s);
/* RoPE of one window's rows t = 0..S-1 (positions t) of q (S, nh·hd) and k (S, nkv·hd), and
 * v, into act q16 (S, nh·hd) and k16, v16 (S, nh·hd) with every kv head repeated for its
 * nh/nkv query heads (so attention is plain per-head batched GEMMs). */
int gq_rope_expand(const float *q, const float *k, const float *v, const float *inv_freq, void *q16, void *k16, void *v16,
                   int f32, int S, int nh, int nkv, int hd, cudaStream_t s);
/* P (nh, S, S) act = causal row softmax of scores (nh, S, S) fp32 (row t keeps keys 0..t, zeros after). */
int gq_causal_softmax(void *P, int f32, const float *scores, int nh, int S, cudaStream_t s);
/* act (n) = silu(g) · u. */
int gq_silu_mul(void *act, int f32, const float *g, const float *u, int64_t n, cudaStream_t s);
/* *bad (device int) += count of non-finite values of x (n). */
int gq_count_nonfinite(const float *x, int64_t n, int *bad, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
