/* A Linear layer as the forward pass sees it: y = x·Wᵀ + b.
 * The weight is either dense in its file dtype (F32/F16/BF16, usually borrowed from the
 * memory map) or GPTQ-quantized in the packed qk layout (kernels/cpu/qtypes.h), which
 * the fused dequantizing kernels multiply by directly. */
#ifndef GPTQ_MODEL_LINEAR_H
#define GPTQ_MODEL_LINEAR_H

#include <stdint.h>

#include "core/dtype.h"
#include "kernels/cpu/qtypes.h"

typedef struct {
    int64_t out, in;
    gptq_dtype dtype; /* element type of w: F32, F16 or BF16 (dense layers) */
    const void *w;    /* (out, in) row-major; borrowed from a memory map, or == owned; NULL when qk */
    void *owned;      /* heap weight owned by this layer (NULL when borrowed) */
    qk_layer *qk;     /* packed quantized weight (out, in), owned; NULL for dense layers */
    float *bias;      /* (out) or NULL; owned */
} linear;

/* y (T, out) = x (T, in) · Wᵀ (+ bias). */
void linear_forward(const linear *l, float *y, const float *x, int T);
/* y[i] = linear_forward(l[i], x) for n Linears that share their input; decode (T == 1)
 * runs them in one pass where the q8 kernel allows (kernels/cpu/qmatmul.h). */
void linear_forward_multi(const linear *const *l, float *const *y, int n, const float *x, int T);
/* Replaces the weight by an owned fp32 copy `w` (out, in) (takes ownership). */
void linear_set_f32(linear *l, float *w);
/* Replaces the weight by a packed quantized one (takes ownership of *q's arrays). */
void linear_set_qk(linear *l, qk_layer *q);
/* Row r of the weight as fp32 into dst (in). */
void linear_row_f32(const linear *l, int64_t r, float *dst);
/* Bytes of weight one product streams (packed codes + scales + zeros, or the dense matrix). */
int64_t linear_weight_bytes(const linear *l);
void linear_free(linear *l);

#endif
