/* GPTQ quantization of one Linear layer (Frantar et al. 2022, "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers"), following the reference
 * implementation's fasterquant() step for step so results match AutoGPTQ's up to the
 * documented choices below.
 *
 * Algorithm, for W (out, in) and H (in, in):
 *  1. Whole-row grid (group_size -1): computed from the original W, before step 2 (as the
 *     reference does: its quantizer is set up before dead columns are zeroed).
 *  2. Dead inputs (H[i][i] == 0): H[i][i] = 1 and W[:, i] = 0.
 *  3. static_groups: the grid of every group is computed up front from this W, in original
 *     column order.
 *  4. act_order (desc_act): columns are processed in order of descending diag(H).  Ties are
 *     broken by ascending original column index (a stable sort), so the order is fully
 *     deterministic (torch.argsort(descending=True) gives no guarantee for ties).
 *  5. Damping: λ = damp · mean(diag H) is added to the diagonal.
 *  6. U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU).  Computed in double: with J the
 *     reversal permutation, chol(J H J) = L gives H = R Rᵀ with R = J L J upper, and
 *     U = R⁻¹ = J L⁻¹ J is exactly the (unique) upper Cholesky factor of H⁻¹.  So one
 *     dpotrf + one dtrtri (2/3·in³ flops) replace the reference's cholesky,
 *     cholesky_inverse, cholesky (4/3·in³), without ever forming H⁻¹.  Double rather than
 *     fp32 because Llama Hessians are badly conditioned (outlier features) and the
 *     reference's fp32 route loses digits in H⁻¹; in double it costs about what the
 *     reference's fp32 route costs.  U is then rounded to fp32 for the column loop.
 *     If H + λI is not positive definite, the factorization is retried with the damping
 *     fraction ×10 (0 becomes 0.01) up to 3 times; damp_retries says how many were
 *     needed (the caller should warn, naming the layer); after that it fails.
 *  7. Columns in blocks of block_size with lazy batch updates: inside a block each row is
 *     quantized column by column (err = (w − q)/U[j][j], the rest of the block's row
 *     updated by −err·U[j][j+1:]); then W[:, i2:] −= Err · U[i1:i2, i2:] (cblas_sgemm).
 *     Group grids (group_size > 0, not static) are computed at the first column of each
 *     group (in processing order) from W[:, j : j + group_size] *as the reference reads
 *     it*: that W carries the updates of all finished blocks but not those of earlier
 *     columns of the current block (the reference updates a copy of the block).
 *     loss = Σ (w − q)²/U[j][j]² / 2, the reference's Losses.sum().
 * All quantization uses fp16-exact scales (quantizer.h).
 *
 * Output error for free: with E the matrix of err values, W − Ŵ = E·U exactly (in the
 * processed order), so tr(ΔW (H + λI) ΔWᵀ) = ‖E‖² = 2·loss and
 * err_sq = tr(ΔW H ΔWᵀ) = 2·loss − λ‖ΔW‖² (ΔW against the dead-zeroed W; dead columns
 * of a PSD H are zero so they do not count).  It is exact up to fp32 rounding of the
 * updates; hessian_rel_error() computes the same from scratch for any pair of weights.
 *
 * Threads: rows of a block run in an OpenMP loop, the updates and the factorization in
 * OpenBLAS's pool; small layers run on the calling thread only.  OpenBLAS's parallel and
 * serial dpotrf round differently, so results can differ in the last bits (rarely a code)
 * with the thread count; for a fixed thread count they are deterministic. */
#ifndef GPTQ_QUANT_GPTQ_H
#define GPTQ_QUANT_GPTQ_H

#include <stdint.h>

#include "quant/quantizer.h"

/* A per-group grid supplied by the caller instead of quantizer.h's (GGUF block formats,
 * quant/gguf_quant.c).  Groups are group_size consecutive columns of a row in ORIGINAL
 * order (in must be a multiple of it).  fit chooses the grid of (row, group) from the
 * group's values x (group_size of them): without act-order when the column loop reaches
 * the group, from the weights as they are then (carrying the error feedback of every
 * column before it: the lazy-update block is widened to a multiple of group_size so the
 * whole group is up to date); with act-order (static groups only) up front from the
 * original weights.  quant codes value x of column col (original index) of row on its
 * group's grid and returns the value it dequantizes to.  Calls for different rows may
 * run concurrently.  The quant_layer of the result then holds only wq and g_idx. */
typedef struct {
    int group_size;
    void (*fit)(void *ctx, int64_t row, int64_t group, const float *x);
    float (*quant)(void *ctx, int64_t row, int64_t col, float x);
    void *ctx;
} gptq_grid_hook;

typedef struct {
    int bits;          /* 2, 3, 4 or 8 */
    int group_size;    /* columns per group, or -1 for one group per row */
    int sym;           /* symmetric grid */
    int act_order;     /* desc_act: process columns by descending diag(H) */
    int static_groups; /* group grids from the original W up front (no-op with group_size -1) */
    int v1_zero;       /* clamp asym zero points to >= 1 for the v1 checkpoint (quantizer.h) */
    int mse;           /* MSE-clipped grids instead of the full range (quantizer.h) */
    float damp;        /* damping as a fraction of mean(diag H) (AutoGPTQ's damp_percent), >= 0 */
    int block_size;    /* columns per lazy-update block (128) */
    int want_rel_err;  /* also compute rel_err (one extra 2·out·in² flop product) */
    const gptq_grid_hook *grid_hook; /* NULL: quantizer.h's grid from bits/group_size/sym/mse */
} gptq_params;

/* bits 4, group 128, asym, no act-order, no static groups, v1_zero 1, damp 0.01, block 128,
 * want_rel_err 0. */
gptq_params gptq_default_params(void);

typedef struct {
    quant_layer q;    /* codes, scales, zeros, g_idx, wq: all in ORIGINAL column order.
                       * g_idx: i / g without act-order or with static groups; with act-order
                       * g_idx[perm[j]] = j / g (groups numbered in processing order). */
    int32_t *perm;    /* (in) processing order: perm[j] = original column processed j-th */
    double loss;      /* Σ (w − q)² / U[j][j]² / 2 (the reference's loss) */
    double err_sq;    /* tr(ΔW H ΔWᵀ) = ‖(W − Ŵ)X‖²·2/N, from the identity above */
    double energy;    /* tr(W H Wᵀ), or NAN unless want_rel_err */
    double rel_err;   /* sqrt(err_sq / energy), or NAN unless want_rel_err */
    int damp_retries; /* 0 normally; 1..3 if the damping had to be raised */
    double damp_used; /* the damping fraction finally used */
    double lambda;    /* the absolute damping added to diag H */
    int dead;         /* number of dead input columns */
} gptq_result;

/* Quantizes w (out, in) row-major fp32 with the Hessian h (in, in) symmetric-full fp32
 * (only read).  Fills *res (free with gptq_result_free).  Returns 0, or -1 with an error:
 * bad parameters, non-finite input, or H not positive definite even after the retries. */
int gptq_quantize(const float *w, const float *h, int64_t out, int64_t in, const gptq_params *p, gptq_result *res);
void gptq_result_free(gptq_result *res);

/* What GPTQ derives from H alone (steps 2, 4, 5, 6): the dead inputs, the processing order
 * and the Cholesky factor U of (H + λI)⁻¹.  None of it depends on the bit width, group
 * size or grid, so one preparation serves every setting of a layer (the measurement pass
 * quantizes each Linear with a whole menu of settings from one factorization). */
typedef struct {
    int64_t n;            /* input features */
    int act_order;        /* the order perm was built for */
    int32_t *perm;        /* (n) processing order */
    unsigned char *dead;  /* (n) 1 for dead inputs (H[i][i] == 0) */
    float *diag;          /* (n) diag H with dead entries set to 1 */
    float *U;             /* (n, n) upper Cholesky factor of (H + λI)⁻¹ in processing order */
    double lambda;        /* absolute damping added */
    double damp_used;     /* the damping fraction finally used */
    int damp_retries;
    int n_dead;
} gptq_hinv;

/* The processing order perm (n) of step 4 from diag (n) (dead entries already 1): by
 * descending diagonal with ties by column (act_order), else the identity.  The GPU path
 * (quant/cuda/gptq_cuda.h) orders its columns with it too. */
void gptq_column_order(const float *diag, int64_t n, int act_order, int32_t *perm);

/* Prepares H (in, in) for quantization with the given order and damping (same errors and
 * retries as gptq_quantize).  Free with gptq_hinv_free. */
int gptq_prepare(const float *h, int64_t in, int act_order, float damp, gptq_hinv *hv);
void gptq_hinv_free(gptq_hinv *hv);
/* gptq_quantize with a prepared H: the same result as gptq_quantize(w, h, out, hv->n, p)
 * when p's act_order and damp are those of the preparation (act_order must match; damp
 * is taken from the preparation).  h is read only for want_rel_err.  Runs on the calling
 * thread's OpenMP team: call it from inside a parallel region to run settings side by side. */
int gptq_quantize_prepared(const float *w, const float *h, int64_t out, const gptq_hinv *hv, const gptq_params *p,
                           gptq_result *res);

#endif
