#include "quant/hessian.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "quant/quantizer.h"

void hessian_init(hessian_acc *a, int64_t in) {
    a->in = in;
    a->nsamples = 0;
    a->rows = 0;
    a->finalized = 0;
    a->h = xaligned_alloc(sizeof(float) * (size_t)(in * in));
    memset(a->h, 0, sizeof(float) * (size_t)(in * in));
}

void hessian_add(hessian_acc *a, const float *x, int64_t rows, int64_t samples) {
    if (rows > 0) {
        /* row-major C (in, in) upper += Xᵀ X with X (rows, in) */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)a->in, (int)rows, 1.0f, x, (int)a->in, 1.0f, a->h,
                    (int)a->in);
    }
    a->rows += rows;
    a->nsamples += samples;
}

int hessian_finalize(hessian_acc *a) {
    if (a->finalized) return gptq_fail("hessian: already finalized");
    if (a->nsamples <= 0) return gptq_fail("hessian: no calibration samples were added");
    float s = (float)(2.0 / (double)a->nsamples);
    int64_t n = a->in;
    float *h = a->h;
#pragma omp parallel for schedule(dynamic, 16) if (n * n > QUANT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i; j < n; j++) {
            float v = h[i * n + j] * s;
            h[i * n + j] = v;
            h[j * n + i] = v;
        }
    }
    a->finalized = 1;
    return 0;
}

void hessian_free(hessian_acc *a) {
    free(a->h);
    a->h = NULL;
}

#define QUAD_CHUNK 256

double hessian_quad(const float *a, int64_t rows, int64_t in, const float *h) {
    int64_t chunk = rows < QUAD_CHUNK ? rows : QUAD_CHUNK;
    if (chunk <= 0) return 0.0;
    float *t = xaligned_alloc(sizeof(float) * (size_t)(chunk * in));
    double total = 0.0;
    /* small products on this thread alone (see GPTQ_SERIAL_FLOPS in gptq.c) */
    const int small = 2.0 * (double)rows * (double)in * (double)in < 5e7, saved = omp_get_max_threads();
    if (small) omp_set_num_threads(1);
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t m = rows - r0 < chunk ? rows - r0 : chunk;
        /* T (m, in) = A[r0:r0+m] (m, in) · H (in, in); sgemm (H is full), OpenBLAS's ssymm is far slower */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)in, (int)in, 1.0f, a + r0 * in, (int)in, h,
                    (int)in, 0.0f, t, (int)in);
        double part = 0.0;
#pragma omp parallel for reduction(+ : part) schedule(static) if (m * in > QUANT_PAR_MIN)
        for (int64_t r = 0; r < m; r++) {
            double acc = 0.0;
            const float *ar = a + (r0 + r) * in, *tr = t + r * in;
            for (int64_t i = 0; i < in; i++) acc += (double)ar[i] * (double)tr[i];
            part += acc;
        }
        total += part;
    }
    if (small) omp_set_num_threads(saved);
    free(t);
    return total;
}

double hessian_rel_error(const float *w, const float *wq, int64_t out, int64_t in, const float *h, double *err_sq,
                         double *energy) {
    float *d = xaligned_alloc(sizeof(float) * (size_t)(out * in));
#pragma omp parallel for schedule(static) if (out * in > QUANT_PAR_MIN)
    for (int64_t k = 0; k < out * in; k++) d[k] = w[k] - wq[k];
    double e = hessian_quad(d, out, in, h);
    free(d);
    double en = hessian_quad(w, out, in, h);
    if (e < 0) e = 0;
    if (err_sq) *err_sq = e;
    if (energy) *energy = en;
    if (en <= 0) return e == 0 ? 0.0 : INFINITY;
    return sqrt(e / en);
}
