/* The GPTQ Hessian of one Linear layer, H = 2/N · Σ xᵀx over its calibration inputs, and
 * the output-error measures that use it: for a weight W and its quantization Ŵ,
 * ‖(W − Ŵ)X‖²_F · 2/N = tr(ΔW H ΔWᵀ) and ‖WX‖²_F · 2/N = tr(W H Wᵀ).
 *
 * Accumulation: the reference (GPTQ / AutoGPTQ add_batch) keeps H normalized at all times,
 * H *= n/(n+k); n += k; H += 2/n · xᵀx, where n counts calibration *samples* (sequences:
 * the batch dimension), not token rows.  We keep the raw fp32 sum S = Σ xᵀx (cblas_ssyrk,
 * upper triangle) and the sample count, and scale once at the end: H = 2/n · S.  That is
 * the same matrix without one extra rounding per batch from the rescaling, and costs
 * nothing since H is only needed after the last batch.  (Accumulating in double would
 * double the memory of an 11008² Hessian for no practical gain: each batch is already
 * summed by one ssyrk.)  The scale of H only changes GPTQ's reported loss, never its
 * result; pass the number of sequences as `samples` to reproduce AutoGPTQ's loss values. */
#ifndef GPTQ_QUANT_HESSIAN_H
#define GPTQ_QUANT_HESSIAN_H

#include <stdint.h>

typedef struct {
    int64_t in;       /* input features */
    int64_t nsamples; /* samples added so far */
    int64_t rows;     /* token rows added so far */
    float *h;         /* (in, in): raw Σ xᵀx in the upper triangle until finalized; then the full symmetric H */
    int finalized;
} hessian_acc;

/* Zeroed accumulator for `in` input features. */
void hessian_init(hessian_acc *a, int64_t in);
/* S += xᵀx for x (rows, in) row-major fp32, counting `samples` calibration samples. */
void hessian_add(hessian_acc *a, const float *x, int64_t rows, int64_t samples);
/* H = 2/nsamples · S, made symmetric-full.  -1 + error if nothing was added or already finalized. */
int hessian_finalize(hessian_acc *a);
void hessian_free(hessian_acc *a);

/* tr(A H Aᵀ) = Σ_r a_r H a_rᵀ for a (rows, in) and symmetric-full h (in, in), accumulated in
 * double over fp32 products (cblas_sgemm on row chunks; 2·rows·in² flops). */
double hessian_quad(const float *a, int64_t rows, int64_t in, const float *h);

/* Relative output error sqrt(tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)) = ‖(W − Ŵ)X‖_F / ‖WX‖_F of
 * wq (out, in) against w (out, in), h (in, in) symmetric-full.  Optional outputs:
 * *err_sq = tr(ΔW H ΔWᵀ), *energy = tr(W H Wᵀ).  0 when both are 0, INFINITY when only
 * the energy is.  Cost: 4·out·in² flops (two hessian_quad). */
double hessian_rel_error(const float *w, const float *wq, int64_t out, int64_t in, const float *h, double *err_sq,
                         double *energy);

#endif
