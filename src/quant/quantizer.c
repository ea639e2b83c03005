#include "quant/quantizer.h"

#include <stdlib.h>

#include "core/dtype.h"
#include "core/error.h"

int quant_check_bits(int bits) {
    if (bits == 2 || bits == 3 || bits == 4 || bits == 8) return 0;
    return gptq_fail("unsupported bit width %d (expected 2, 3, 4 or 8)", bits);
}

/* fp32 -> nearest fp16 value, kept finite and non-zero (see quantizer.h). */
static float fp16_scale(float s) {
    float h = f16_to_f32(f32_to_f16(s));
    if (h == 0.0f || !(h == h)) h = 0x1p-24f;
    if (isinf(h)) h = 65504.0f;
    return h;
}

/* Scale and zero of the grid spanning [xmin, xmax] (xmin <= 0 <= xmax, not both 0). */
static void grid_for_range(float xmin, float xmax, const quant_grid *g, int maxq, float *scale, int32_t *zero) {
    float s = fp16_scale((xmax - xmin) / (float)maxq);
    int32_t z;
    if (g->sym) {
        z = (maxq + 1) / 2;
    } else {
        float zf = nearbyintf(-xmin / s);
        if (zf < 0.0f) zf = 0.0f;
        if (zf > (float)maxq) zf = (float)maxq;
        z = (int32_t)zf;
        if (g->v1_zero && z < 1) z = 1;
    }
    *scale = s;
    *zero = z;
}

#define MSE_GRID 100     /* shrink steps of 1% */
#define MSE_MAXSHRINK 80 /* down to 21% of the range */

void quant_row_params(const float *x, int64_t n, const quant_grid *g, float *scale, int32_t *zero) {
    int maxq = quant_maxq(g->bits);
    float xmin = 0.0f, xmax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < xmin) xmin = x[i];
        if (x[i] > xmax) xmax = x[i];
    }
    if (g->sym) {
        float a = fabsf(xmin);
        if (a > xmax) xmax = a;
        if (xmin < 0.0f) xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    grid_for_range(xmin, xmax, g, maxq, scale, zero);
    if (!g->mse) return;
    double best = INFINITY;
    for (int i = 0; i < MSE_MAXSHRINK; i++) {
        float p = 1.0f - (float)i / MSE_GRID, s1;
        int32_t z1;
        grid_for_range(p * xmin, p * xmax, g, maxq, &s1, &z1);
        double err = 0;
        uint8_t code;
        for (int64_t k = 0; k < n; k++) {
            float d = quant_one(x[k], s1, z1, maxq, &code) - x[k];
            err += d * d;
        }
        if (err < best) {
            best = err;
            *scale = s1;
            *zero = z1;
        }
    }
}

void quant_find_params(const float *w, int64_t rows, int64_t ld, int64_t c0, int64_t c1, const quant_grid *g,
                       float *scale, int32_t *zero, int64_t stride) {
#pragma omp parallel for schedule(static) if (rows * (c1 - c0) > QUANT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) quant_row_params(w + r * ld + c0, c1 - c0, g, scale + r * stride, zero + r * stride);
}

void quant_layer_alloc(quant_layer *q, int64_t out, int64_t in, int bits, int group_size, int with_wq) {
    q->out = out;
    q->in = in;
    q->bits = bits;
    q->group_size = group_size <= 0 ? -1 : group_size;
    q->groups = quant_num_groups(in, group_size);
    q->codes = xmalloc((size_t)(out * in));
    q->scales = xmalloc(sizeof(float) * (size_t)(q->groups * out));
    q->zeros = xmalloc(sizeof(int32_t) * (size_t)(q->groups * out));
    q->g_idx = xmalloc(sizeof(int32_t) * (size_t)in);
    q->wq = with_wq ? xaligned_alloc(sizeof(float) * (size_t)(out * in)) : NULL;
}

void quant_layer_free(quant_layer *q) {
    free(q->codes);
    free(q->scales);
    free(q->zeros);
    free(q->g_idx);
    free(q->wq);
    q->codes = NULL;
    q->scales = NULL;
    q->zeros = NULL;
    q->g_idx = NULL;
    q->wq = NULL;
}

void quant_layer_dequantize(quant_layer *q) {
    if (!q->wq) q->wq = xaligned_alloc(sizeof(float) * (size_t)(q->out * q->in));
    int64_t out = q->out, in = q->in;
#pragma omp parallel for schedule(static) if (out * in > QUANT_PAR_MIN)
    for (int64_t o = 0; o < out; o++) {
        const uint8_t *c = q->codes + o * in;
        float *w = q->wq + o * in;
        for (int64_t i = 0; i < in; i++) {
            int64_t gi = (int64_t)q->g_idx[i] * out + o;
            w[i] = q->scales[gi] * ((float)c[i] - (float)q->zeros[gi]);
        }
    }
}
