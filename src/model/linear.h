/* A Linear layer as the forward pass sees it: y = x·Wᵀ + b.
 * Today the weight is dense in its file dtype; quantized kinds plug in here. */
#ifndef GPTQ_MODEL_LINEAR_H
#define GPTQ_MODEL_LINEAR_H

#include <stdint.h>

#include "core/dtype.h"

typedef struct {
    int64_t out, in;
    gptq_dtype dtype; /* element type of w: F32, F16 or BF16 */
    const void *w;    /* (out, in) row-major; borrowed from a memory map, or == owned */
    void *owned;      /* heap weight owned by this layer (NULL when borrowed) */
    float *bias;      /* (out) or NULL; owned */
} linear;

/* y (T, out) = x (T, in) · Wᵀ (+ bias). */
void linear_forward(const linear *l, float *y, const float *x, int T);
/* Replaces the weight by an owned fp32 copy `w` (out, in) (takes ownership). */
void linear_set_f32(linear *l, float *w);
/* Row r of the weight as fp32 into dst (in). */
void linear_row_f32(const linear *l, int64_t r, float *dst);
void linear_free(linear *l);

#endif
