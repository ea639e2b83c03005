/* The qk product dispatcher (path choice, activation preparation, OpenMP over output
 * rows, the dequantize + sgemm path for large T), the scalar kernels over the qk layout,
 * and the oracle that reads the checkpoint tensors directly.  SIMD kernels live in
 * qmatmul_avx2.c and qmatmul_avx512.c. */
#include "kernels/cpu/qmatmul.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/qmatmul_impl.h"
#include "quant/pack.h"

/* Multiply-adds below which a product stays on one thread. */
#define QK_PAR_MIN (1 << 18)

/* ---- paths ---- */

static qk_path resolve(qk_path path);

int qk_path_supported(qk_path path) {
    const cpu_features *f = cpu_get_features();
    switch (path) {
    case QK_PATH_AUTO:
    case QK_PATH_SCALAR: return 1;
    case QK_PATH_AVX2: return f->avx2;
    case QK_PATH_AVX512: return f->avx512;
    }
    return 0;
}

const char *qk_path_name(qk_path path) {
    switch (path) {
    case QK_PATH_AUTO: return "auto";
    case QK_PATH_SCALAR: return "scalar";
    case QK_PATH_AVX2: return "avx2";
    case QK_PATH_AVX512: return "avx512";
    }
    return "?";
}

int qk_blas_min_t(qk_path path) {
    switch (resolve(path)) {
    case QK_PATH_AVX512: return INT_MAX;
    case QK_PATH_AVX2: return 16;
    default: return 2;
    }
}

static qk_path resolve(qk_path path) {
    const cpu_features *f = cpu_get_features();
    if (path == QK_PATH_AUTO) path = f->avx512 ? QK_PATH_AVX512 : f->avx2 ? QK_PATH_AVX2 : QK_PATH_SCALAR;
    if (path == QK_PATH_AVX512 && !f->avx512) path = QK_PATH_AVX2;
    if (path == QK_PATH_AVX2 && !f->avx2) path = QK_PATH_SCALAR;
    return path;
}

/* ---- scalar kernels: the qk layout read one code at a time ---- */

void qk_rows_scalar(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1) {
    const int C = L->chunks_per_block, bits = L->bits;
    const int64_t G = L->groups, P = L->in_pad;
    for (int64_t o = o0; o < o1; o++) {
        const qk_block *row = L->qw + o * L->row_blocks;
        for (int t = 0; t < a->T; t++) {
            const float *x = a->x + t * P;
            float acc = 0;
            for (int64_t g = 0; g < G; g++) {
                const float s = f16_to_f32(L->scales[o * G + g]);
                const float z = (float)(L->zeros[o * G + g] + L->zero_base);
                float d = 0;
                for (int64_t c = L->group_chunk[g]; c < L->group_chunk[g + 1]; c++) {
                    const qk_block *b = row + c / C;
                    const int j = (int)(c % C);
                    for (int i = 0; i < QK_CHUNK; i++)
                        d += ((float)qk_code(b->w[i % QK_HALF], 2 * j + i / QK_HALF, bits) - z) * x[c * QK_CHUNK + i];
                }
                acc += s * d;
            }
            y[(int64_t)t * L->out + o] = acc;
        }
    }
}

void qk_dequant_scalar(const qk_layer *L, int64_t o0, int64_t o1, float *w) {
    const int C = L->chunks_per_block, bits = L->bits;
    const int64_t G = L->groups, P = L->in_pad;
    for (int64_t o = o0; o < o1; o++) {
        const qk_block *row = L->qw + o * L->row_blocks;
        float *wr = w + (o - o0) * P;
        for (int64_t g = 0; g < G; g++) {
            const float s = f16_to_f32(L->scales[o * G + g]);
            const float z = (float)(L->zeros[o * G + g] + L->zero_base);
            for (int64_t c = L->group_chunk[g]; c < L->group_chunk[g + 1]; c++) {
                const qk_block *b = row + c / C;
                const int j = (int)(c % C);
                for (int i = 0; i < QK_CHUNK; i++)
                    wr[c * QK_CHUNK + i] = s * ((float)qk_code(b->w[i % QK_HALF], 2 * j + i / QK_HALF, bits) - z);
            }
        }
    }
}

#if !defined(__x86_64__)
void qk_rows_avx2(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1) { qk_rows_scalar(L, a, y, o0, o1); }
void qk_rows_avx512(const qk_layer *L, const qk_acts *a, float *y, int64_t o0, int64_t o1) { qk_rows_scalar(L, a, y, o0, o1); }
void qk_dequant_avx2(const qk_layer *L, int64_t o0, int64_t o1, float *w) { qk_dequant_scalar(L, o0, o1, w); }
void qk_dequant_avx512(const qk_layer *L, int64_t o0, int64_t o1, float *w) { qk_dequant_scalar(L, o0, o1, w); }
#endif

void qk_dequant_rows(const qk_layer *L, int64_t o0, int64_t o1, float *w, qk_path path) {
    switch (resolve(path)) {
    case QK_PATH_AVX512: qk_dequant_avx512(L, o0, o1, w); break;
    case QK_PATH_AVX2: qk_dequant_avx2(L, o0, o1, w); break;
    default: qk_dequant_scalar(L, o0, o1, w); break;
    }
}

/* ---- activations ---- */

/* x (T, in) -> xk (T, in_pad) in kernel order, pre-scaled by xfac if prescale; group sums
 * of the unscaled values into xsum (T, groups) unless xsum is NULL. */
static void prepare(const qk_layer *L, const float *x, int T, int prescale, float *xk, float *xsum) {
    const int64_t in = L->in, P = L->in_pad, G = L->groups;
    const int C = L->chunks_per_block;
#pragma omp parallel for schedule(static) if ((int64_t)T * P > QUANT_PAR_MIN)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (int64_t)t * in;
        float *d = xk + (int64_t)t * P;
        if (L->perm)
            for (int64_t p = 0; p < P; p++) d[p] = L->perm[p] >= 0 ? xr[L->perm[p]] : 0.0f;
        else
            memcpy(d, xr, sizeof(float) * (size_t)P);
        if (xsum)
            for (int64_t g = 0; g < G; g++) {
                double s = 0;
                for (int64_t p = (int64_t)L->group_chunk[g] * QK_CHUNK; p < (int64_t)L->group_chunk[g + 1] * QK_CHUNK; p++)
                    s += d[p];
                xsum[(int64_t)t * G + g] = (float)s;
            }
        if (prescale)
            for (int64_t c = 0; c < L->nchunks; c++) {
                const int j = (int)(c % C);
                const float f0 = L->xfac[2 * j], f1 = L->xfac[2 * j + 1];
                for (int i = 0; i < QK_HALF; i++) {
                    d[c * QK_CHUNK + i] *= f0;
                    d[c * QK_CHUNK + QK_HALF + i] *= f1;
                }
            }
    }
}

/* ---- products ---- */

static void blas_product(const qk_layer *L, float *y, const float *x, int T, qk_path path) {
    const int64_t P = L->in_pad, out = L->out;
    float *xk = xaligned_alloc(sizeof(float) * (size_t)((int64_t)T * P));
    prepare(L, x, T, 0, xk, NULL);
    int64_t rows = (1 << 20) / P; /* a tile of about 4 MiB of fp32 weights */
    if (rows < 64) rows = 64;
    if (rows > out) rows = out;
    float *wf = xaligned_alloc(sizeof(float) * (size_t)(rows * P));
    for (int64_t o0 = 0; o0 < out; o0 += rows) {
        const int64_t nr = out - o0 < rows ? out - o0 : rows;
#pragma omp parallel for schedule(static) if (nr * P > QUANT_PAR_MIN)
        for (int64_t r = 0; r < nr; r += 8) {
            const int64_t e = r + 8 < nr ? r + 8 : nr;
            qk_dequant_rows(L, o0 + r, o0 + e, wf + r * P, path);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)nr, (int)P, 1.0f, xk, (int)P, wf, (int)P, 0.0f,
                    y + o0, (int)out);
    }
    free(wf);
    free(xk);
}

void qk_matmul_ex(const qk_layer *L, float *y, const float *x, int T, qk_path path, int blas_min_t) {
    if (T <= 0 || L->out <= 0) return;
    path = resolve(path);
    if (blas_min_t <= 0) blas_min_t = qk_blas_min_t(path);
    if (T >= blas_min_t) {
        blas_product(L, y, x, T, path);
        return;
    }
    const int64_t P = L->in_pad, G = L->groups, out = L->out;
    float *xk = xaligned_alloc(sizeof(float) * (size_t)((int64_t)T * P));
    float *xsum = xmalloc(sizeof(float) * (size_t)((int64_t)T * G));
    prepare(L, x, T, path != QK_PATH_SCALAR, xk, xsum);
    const qk_acts a = {T, xk, xsum};
    void (*rows)(const qk_layer *, const qk_acts *, float *, int64_t, int64_t) =
        path == QK_PATH_AVX512 ? qk_rows_avx512 : path == QK_PATH_AVX2 ? qk_rows_avx2 : qk_rows_scalar;
#pragma omp parallel if (out * P * T > QK_PAR_MIN)
    {
        /* contiguous row ranges: each thread streams its part of the weights in order */
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int64_t o0 = out * id / nt, o1 = out * (id + 1) / nt;
        if (o1 > o0) rows(L, &a, y, o0, o1);
    }
    free(xsum);
    free(xk);
}

void qk_matmul(const qk_layer *L, float *y, const float *x, int T) {
    if (T == 1 && qk_decode_q8_enabled() && qk_q8_supported(L)) qk_gemv_q8(L, y, x);
    else qk_matmul_ex(L, y, x, T, QK_PATH_AUTO, 0);
}

/* ---- the oracle ---- */

/* Value k of a little-endian stream of `bits`-bit values in 32-bit words `stride` apart. */
static uint32_t stream_value(const int32_t *words, int64_t stride, int64_t k, int bits) {
    const uint32_t *w = (const uint32_t *)words;
    int64_t pos = k * bits;
    uint64_t two = w[(pos / 32) * stride];
    if (pos % 32 + bits > 32) two |= (uint64_t)w[(pos / 32 + 1) * stride] << 32;
    return (uint32_t)(two >> (pos % 32)) & ((1u << bits) - 1u);
}

int qk_matmul_ref(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                  int64_t out, int64_t in, int64_t groups, int bits, int group_size, int zero_v2, float *y,
                  const float *x, int T) {
    if (gptq_pack_check(out, in, bits)) return -1;
    if (groups <= 0) return gptq_fail("qk reference: bad group count %lld", (long long)groups);
    for (int64_t i = 0; i < in; i++) {
        int64_t g = g_idx ? g_idx[i] : group_size <= 0 ? 0 : i / group_size;
        if (g < 0 || g >= groups) return gptq_fail("qk reference: input %lld is in group %lld", (long long)i, (long long)g);
    }
    const int64_t zwords = out * bits / 32;
    for (int t = 0; t < T; t++)
        for (int64_t o = 0; o < out; o++) {
            double acc = 0;
            for (int64_t i = 0; i < in; i++) {
                int64_t g = g_idx ? g_idx[i] : group_size <= 0 ? 0 : i / group_size;
                float q = (float)stream_value(qweight + o, out, i, bits);
                float z = (float)stream_value(qzeros + g * zwords, 1, o, bits) + (zero_v2 ? 0.0f : 1.0f);
                float s = f16_to_f32(scales[g * out + o]);
                acc += (double)(s * (q - z)) * x[(int64_t)t * in + i];
            }
            y[(int64_t)t * out + o] = (float)acc;
        }
    return 0;
}
