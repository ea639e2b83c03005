/* llama.cpp block formats: reference quantizers, dequantizers, and per-block grids for
 * GPTQ (see ggml_quants.h and ggml_blocks.h).
 *
 * The reference quantizers reproduce ggml's quantize_row_*_ref operation for operation
 * (fp32 throughout, no contraction into FMAs: this file is compiled as ISO C, and ggml's
 * reference code is built without FMA as well), so that the bytes are identical; the unit
 * test checks them against frozen outputs of ggml itself.
 *
 * K-quants are written as "fit the block header (super-block scales, sub-block scales and
 * mins) from the values", then "code every value on that header's grid"; the reference is
 * exactly that composition, and GPTQ uses the same two steps with the values changing
 * between them (each column carries the error feedback of the columns before it). */
#include "quant/ggml_quants.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/dtype.h"
#include "quant/ggml_blocks.h"

#define GROUP_MAX_EPS 1e-15f

static inline float h2f(ggml_fp16 h) { return f16_to_f32(h); }
static inline ggml_fp16 f2h(float f) { return f32_to_f16(f); }

/* ggml's nearest_int: round half to even through the float mantissa (|v| <= 4194303). */
static inline int nearest_int(float v) {
    float val = v + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

/* nearest_int for values that may be far outside the grid (GPTQ's updated weights). */
static inline int nearest_int_sat(float v) {
    if (!(v > -4194303.f)) return -4194303;
    if (v > 4194303.f) return 4194303;
    return nearest_int(v);
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---------------- legacy 32-value blocks ---------------- */

static void absmax_signed(const float *x, int n, float *amax_out, float *max_out) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) {
            amax = fabsf(v);
            max = v;
        }
    }
    *amax_out = amax;
    *max_out = max;
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        const float v = x[j];
        if (v < min) min = v;
        if (v > max) max = v;
    }
    *mn = min;
    *mx = max;
}

static void ref_q4_0(const float *x, block_q4_0 *y) {
    float amax, max;
    absmax_signed(x, 32, &amax, &max);
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    for (int j = 0; j < 16; ++j) {
        const float x0 = x[j] * id, x1 = x[16 + j] * id;
        const int a = (int8_t)(x0 + 8.5f), b = (int8_t)(x1 + 8.5f);
        y->qs[j] = (uint8_t)((a < 15 ? a : 15) | (b < 15 ? b : 15) << 4);
    }
}

static void ref_q4_1(const float *x, block_q4_1 *y) {
    float min, max;
    min_max(x, 32, &min, &max);
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    y->m = f2h(min);
    for (int j = 0; j < 16; ++j) {
        const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
        const int a = (int8_t)(x0 + 0.5f), b = (int8_t)(x1 + 0.5f);
        y->qs[j] = (uint8_t)((a < 15 ? a : 15) | (b < 15 ? b : 15) << 4);
    }
}

static void ref_q5_0(const float *x, block_q5_0 *y) {
    float amax, max;
    absmax_signed(x, 32, &amax, &max);
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const float x0 = x[j] * id, x1 = x[16 + j] * id;
        int a = (int8_t)(x0 + 16.5f), b = (int8_t)(x1 + 16.5f);
        a = a < 31 ? a : 31, b = b < 31 ? b : 31;
        y->qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= (uint32_t)((a & 0x10) >> 4) << j;
        qh |= (uint32_t)((b & 0x10) >> 4) << (j + 16);
    }
    memcpy(y->qh, &qh, 4);
}

static void ref_q5_1(const float *x, block_q5_1 *y) {
    float min, max;
    min_max(x, 32, &min, &max);
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    y->m = f2h(min);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
        const uint8_t a = (uint8_t)(x0 + 0.5f), b = (uint8_t)(x1 + 0.5f);
        y->qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= (uint32_t)((a & 0x10) >> 4) << j;
        qh |= (uint32_t)((b & 0x10) >> 4) << (j + 16);
    }
    memcpy(y->qh, &qh, 4);
}

static void ref_q8_0(const float *x, block_q8_0 *y) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    for (int j = 0; j < 32; ++j) y->qs[j] = (int8_t)roundf(x[j] * id);
}

/* ---------------- K-quant scale searches (as ggml's) ---------------- */

/* The value of largest magnitude in x[0..n) (its sign kept); *amax = its magnitude. */
static float signed_absmax(int n, const float *x, float *amax) {
    float max = 0;
    *amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > *amax) {
            *amax = ax;
            max = x[i];
        }
    }
    return max;
}

/* Codes l = clamp(round(iscale·x), −nmax, nmax−1) and their x²-weighted sums Σw·x·l and
 * Σw·l²; the codes go to L (offset by `offset`) when L is not NULL. */
static void weighted_codes(int n, int nmax, const float *x, float iscale, int8_t *L, int offset, float *sumlx, float *suml2) {
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = clampi(l, -nmax, nmax - 1);
        if (L) L[i] = (int8_t)(l + offset);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx, *suml2 = sl2;
}

static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type) {
    float amax;
    const float max = signed_absmax(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    /* rmse_type 1 only (q6_k's reference): weights x² */
    (void)rmse_type;
    float sumlx, suml2;
    weighted_codes(n, nmax, x, -nmax / max, L, nmax, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float iscale = -(nmax + 0.1f * is) / max;
        weighted_codes(n, nmax, x, iscale, NULL, 0, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            weighted_codes(n, nmax, x, iscale, L, nmax, &sumlx, &suml2);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    const float max = signed_absmax(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float sumlx, suml2;
    weighted_codes(n, nmax, x, -nmax / max, L, 0, &sumlx, &suml2);
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = clampi(new_l, -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)clampi(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_mad += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = clampi(l, 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                mad += weights[i] * diff;
            }
            if (mad < best_mad) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* 6-bit scale and min of sub-block j of a q4_k / q5_k header. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static inline int q3k_scale(const block_q3_k *b, int j) {
    int sc = j < 8 ? b->scales[j] & 0xF : b->scales[j - 8] >> 4;
    return (sc | (((b->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* ---------------- K-quant headers ---------------- */

/* Each fit writes the header of block b from the 256 values x, zeroes its codes, and leaves
 * in L (256) the codes of the scale search (the reference keeps them for sub-blocks whose
 * quantized scale is zero). */

static void fit_q2_k(const float *x, block_q2_k *y, uint8_t *L) {
    uint8_t Laux[16];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.f;
    float max_scale = 0, max_min = 0;
    memset(y, 0, sizeof *y);
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
        scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
        float iscale = q4scale / max_scale;
        for (int j = 0; j < 16; ++j) y->scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
        y->d = f2h(max_scale / q4scale);
    } else {
        y->d = f2h(0.f);
    }
    if (max_min > 0) {
        float iscale = q4scale / max_min;
        for (int j = 0; j < 16; ++j) y->scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
        y->dmin = f2h(max_min / q4scale);
    } else {
        y->dmin = f2h(0.f);
    }
}

static void fit_q3_k(const float *x, block_q3_k *y, uint8_t *L) {
    int8_t Ls[QK_K];
    float scales[16];
    float max_scale = 0, amax = 0;
    memset(y, 0, sizeof *y);
    for (int j = 0; j < 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, Ls + 16 * j);
        float scale = fabsf(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    for (int k = 0; k < QK_K; k++) L[k] = (uint8_t)Ls[k];
    if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) {
            int8_t l = (int8_t)nearest_int(iscale * scales[j]);
            l = (int8_t)(clampi(l, -32, 31) + 32);
            if (j < 8) y->scales[j] = l & 0xF;
            else y->scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
            l >>= 4;
            y->scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
        }
        y->d = f2h(1 / iscale);
    } else {
        y->d = f2h(0.f);
    }
}

/* q4_k and q5_k share the header: nmax 15 / 31 and the search's rmin / nstep differ. */
static void fit_q45_k(const float *x, ggml_fp16 *d, ggml_fp16 *dmin, uint8_t *sc12, uint8_t *L, int nmax) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = nmax == 15 ? make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, 0)
                               : make_qkx2_quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(sc12, 0, 12);
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            sc12[j] = ls;
            sc12[j + 4] = lm;
        } else {
            sc12[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc12[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc12[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d = f2h(max_scale / 63.f);
    *dmin = f2h(max_min / 63.f);
}

static void fit_q4_k(const float *x, block_q4_k *y, uint8_t *L) {
    memset(y, 0, sizeof *y);
    fit_q45_k(x, &y->d, &y->dmin, y->scales, L, 15);
}

static void fit_q5_k(const float *x, block_q5_k *y, uint8_t *L) {
    memset(y, 0, sizeof *y);
    fit_q45_k(x, &y->d, &y->dmin, y->scales, L, 31);
}

/* q6_k: a block whose sub-block scales are all ~0 stays all zero, as the reference's. */
static void fit_q6_k(const float *x, block_q6_k *y, uint8_t *L) {
    int8_t Ls[QK_K];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    memset(y, 0, sizeof *y);
    for (int ib = 0; ib < 16; ++ib) {
        const float scale = make_qx_quants(16, 32, x + 16 * ib, Ls + 16 * ib, 1);
        scales[ib] = scale;
        const float abs_scale = fabsf(scale);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    for (int k = 0; k < QK_K; k++) L[k] = (uint8_t)Ls[k];
    if (max_abs_scale < GROUP_MAX_EPS) {
        y->d = f2h(0.f);
        memset(L, 0, QK_K); /* the reference zeroes the whole block */
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = f2h(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) {
        int v = nearest_int(iscale * scales[ib]);
        y->scales[ib] = (int8_t)(v < 127 ? v : 127);
    }
}

/* ---------------- codes: set one value's code in a block ---------------- */

static void set_code(ggml_type t, void *blk, int k, int q) {
    switch (t) {
    case GGML_T_Q4_0:
    case GGML_T_Q4_1: {
        uint8_t *qs = t == GGML_T_Q4_0 ? ((block_q4_0 *)blk)->qs : ((block_q4_1 *)blk)->qs;
        int sh = k < 16 ? 0 : 4;
        qs[k % 16] = (uint8_t)((qs[k % 16] & ~(0xF << sh)) | (q & 0xF) << sh);
        break;
    }
    case GGML_T_Q5_0:
    case GGML_T_Q5_1: {
        uint8_t *qs = t == GGML_T_Q5_0 ? ((block_q5_0 *)blk)->qs : ((block_q5_1 *)blk)->qs;
        uint8_t *qhp = t == GGML_T_Q5_0 ? ((block_q5_0 *)blk)->qh : ((block_q5_1 *)blk)->qh;
        int sh = k < 16 ? 0 : 4;
        qs[k % 16] = (uint8_t)((qs[k % 16] & ~(0xF << sh)) | (q & 0xF) << sh);
        uint32_t qh;
        memcpy(&qh, qhp, 4);
        qh = (qh & ~(1u << k)) | (uint32_t)((q >> 4) & 1) << k;
        memcpy(qhp, &qh, 4);
        break;
    }
    case GGML_T_Q8_0: ((block_q8_0 *)blk)->qs[k] = (int8_t)q; break;
    case GGML_T_Q2_K:
    case GGML_T_Q3_K: {
        uint8_t *qs = t == GGML_T_Q2_K ? ((block_q2_k *)blk)->qs : ((block_q3_k *)blk)->qs;
        int half = k / 128, s = (k % 128) / 32, l = k % 32;
        uint8_t *p = &qs[32 * half + l];
        *p = (uint8_t)((*p & ~(3 << (2 * s))) | (q & 3) << (2 * s));
        if (t == GGML_T_Q3_K) {
            uint8_t *h = &((block_q3_k *)blk)->hmask[k % 32];
            *h = (uint8_t)((*h & ~(1 << (k / 32))) | ((q >> 2) & 1) << (k / 32));
        }
        break;
    }
    case GGML_T_Q4_K:
    case GGML_T_Q5_K: {
        uint8_t *qs = t == GGML_T_Q4_K ? ((block_q4_k *)blk)->qs : ((block_q5_k *)blk)->qs;
        int p = k / 64, hi = (k % 64) / 32, l = k % 32;
        uint8_t *b = &qs[32 * p + l];
        *b = (uint8_t)((*b & ~(0xF << (4 * hi))) | (q & 0xF) << (4 * hi));
        if (t == GGML_T_Q5_K) {
            uint8_t *h = &((block_q5_k *)blk)->qh[l];
            int bit = 2 * p + hi;
            *h = (uint8_t)((*h & ~(1 << bit)) | ((q >> 4) & 1) << bit);
        }
        break;
    }
    case GGML_T_Q6_K: {
        block_q6_k *b = blk;
        int half = k / 128, s = (k % 128) / 32, l = k % 32;
        uint8_t *lo = &b->ql[64 * half + l + 32 * (s & 1)];
        int sh = 4 * (s >> 1);
        *lo = (uint8_t)((*lo & ~(0xF << sh)) | (q & 0xF) << sh);
        uint8_t *h = &b->qh[32 * half + l];
        *h = (uint8_t)((*h & ~(3 << (2 * s))) | ((q >> 4) & 3) << (2 * s));
        break;
    }
    default: break;
    }
}

/* ---------------- K-quant grids: code and value of x as sub-block element k ---------------- */

/* The reference's rule (also GPTQ's): nearest code on the sub-block's fp16-derived grid;
 * *zero_scale set when the sub-block's scale is 0 (then every code gives the same value). */
static int kquant_code(ggml_type t, const void *blk, int k, float x, float *val, int *zero_scale) {
    *zero_scale = 0;
    switch (t) {
    case GGML_T_Q2_K: {
        const block_q2_k *b = blk;
        int j = k / 16;
        const float d = h2f(b->d) * (b->scales[j] & 0xF);
        const float dm = h2f(b->dmin) * (b->scales[j] >> 4);
        if (!d) {
            *zero_scale = 1;
            *val = d * 0 - dm;
            return 0;
        }
        int l = clampi(nearest_int_sat((x + dm) / d), 0, 3);
        *val = d * (float)l - dm;
        return l;
    }
    case GGML_T_Q3_K: {
        const block_q3_k *b = blk;
        const float d = h2f(b->d) * (float)q3k_scale(b, k / 16);
        if (!d) {
            *zero_scale = 1;
            *val = 0.0f;
            return 4;
        }
        int l = clampi(nearest_int_sat(x / d), -4, 3);
        *val = d * (float)l;
        return l + 4;
    }
    case GGML_T_Q4_K:
    case GGML_T_Q5_K: {
        const uint8_t *sc12 = t == GGML_T_Q4_K ? ((const block_q4_k *)blk)->scales : ((const block_q5_k *)blk)->scales;
        ggml_fp16 hd = t == GGML_T_Q4_K ? ((const block_q4_k *)blk)->d : ((const block_q5_k *)blk)->d;
        ggml_fp16 hm = t == GGML_T_Q4_K ? ((const block_q4_k *)blk)->dmin : ((const block_q5_k *)blk)->dmin;
        uint8_t sc, m;
        scale_min_k4(k / 32, sc12, &sc, &m);
        const float d = h2f(hd) * sc;
        const float dm = h2f(hm) * m;
        if (!d) {
            *zero_scale = 1;
            *val = d * 0 - dm;
            return 0;
        }
        int l = clampi(nearest_int_sat((x + dm) / d), 0, t == GGML_T_Q4_K ? 15 : 31);
        *val = d * (float)l - dm;
        return l;
    }
    case GGML_T_Q6_K: {
        const block_q6_k *b = blk;
        const float d = h2f(b->d) * b->scales[k / 16];
        if (!d) {
            *zero_scale = 1;
            *val = 0.0f;
            return 32;
        }
        int l = clampi(nearest_int_sat(x / d), -32, 31);
        *val = h2f(b->d) * b->scales[k / 16] * (float)l;
        return l + 32;
    }
    default: return 0;
    }
}

static void fit_kquant(ggml_type t, const float *x, void *blk, uint8_t *L) {
    switch (t) {
    case GGML_T_Q2_K: fit_q2_k(x, blk, L); break;
    case GGML_T_Q3_K: fit_q3_k(x, blk, L); break;
    case GGML_T_Q4_K: fit_q4_k(x, blk, L); break;
    case GGML_T_Q5_K: fit_q5_k(x, blk, L); break;
    case GGML_T_Q6_K: fit_q6_k(x, blk, L); break;
    default: break;
    }
}

static void ref_kquant(ggml_type t, const float *x, void *blk) {
    uint8_t L[QK_K];
    fit_kquant(t, x, blk, L);
    for (int k = 0; k < QK_K; k++) {
        float v;
        int zero;
        int q = kquant_code(t, blk, k, x[k], &v, &zero);
        set_code(t, blk, k, zero ? L[k] : q);
    }
}

/* ---------------- public: rows ---------------- */

int ggml_quant_supported(ggml_type t) {
    switch (t) {
    case GGML_T_F32:
    case GGML_T_F16:
    case GGML_T_BF16:
    case GGML_T_Q4_0:
    case GGML_T_Q4_1:
    case GGML_T_Q5_0:
    case GGML_T_Q5_1:
    case GGML_T_Q8_0:
    case GGML_T_Q2_K:
    case GGML_T_Q3_K:
    case GGML_T_Q4_K:
    case GGML_T_Q5_K:
    case GGML_T_Q6_K: return 1;
    }
    return 0;
}

void ggml_quantize_rows(ggml_type t, const float *src, int64_t nrows, int64_t ne0, void *dst) {
    const int64_t n = nrows * ne0;
    switch (t) {
    case GGML_T_F32: memcpy(dst, src, sizeof(float) * (size_t)n); return;
    case GGML_T_F16: convert_from_f32(dst, src, DT_F16, (size_t)n); return;
    case GGML_T_BF16: convert_from_f32(dst, src, DT_BF16, (size_t)n); return;
    default: break;
    }
    const ggml_type_traits *tr = ggml_traits(t);
    const int64_t nb = n / tr->block_size;
    char *out = dst;
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * tr->block_size;
        void *y = out + i * tr->type_size;
        switch (t) {
        case GGML_T_Q4_0: ref_q4_0(x, y); break;
        case GGML_T_Q4_1: ref_q4_1(x, y); break;
        case GGML_T_Q5_0: ref_q5_0(x, y); break;
        case GGML_T_Q5_1: ref_q5_1(x, y); break;
        case GGML_T_Q8_0: ref_q8_0(x, y); break;
        default: ref_kquant(t, x, y); break;
        }
    }
}

/* Value k of one block. */
static float block_value(ggml_type t, const void *blk, int k) {
    switch (t) {
    case GGML_T_Q4_0: {
        const block_q4_0 *b = blk;
        int q = k < 16 ? b->qs[k] & 0xF : b->qs[k - 16] >> 4;
        return (float)(q - 8) * h2f(b->d);
    }
    case GGML_T_Q4_1: {
        const block_q4_1 *b = blk;
        int q = k < 16 ? b->qs[k] & 0xF : b->qs[k - 16] >> 4;
        return (float)q * h2f(b->d) + h2f(b->m);
    }
    case GGML_T_Q5_0:
    case GGML_T_Q5_1: {
        const uint8_t *qs = t == GGML_T_Q5_0 ? ((const block_q5_0 *)blk)->qs : ((const block_q5_1 *)blk)->qs;
        const uint8_t *qhp = t == GGML_T_Q5_0 ? ((const block_q5_0 *)blk)->qh : ((const block_q5_1 *)blk)->qh;
        uint32_t qh;
        memcpy(&qh, qhp, 4);
        int q = (k < 16 ? qs[k] & 0xF : qs[k - 16] >> 4) | (int)((qh >> k) & 1) << 4;
        if (t == GGML_T_Q5_0) return (float)(q - 16) * h2f(((const block_q5_0 *)blk)->d);
        return (float)q * h2f(((const block_q5_1 *)blk)->d) + h2f(((const block_q5_1 *)blk)->m);
    }
    case GGML_T_Q8_0: return (float)((const block_q8_0 *)blk)->qs[k] * h2f(((const block_q8_0 *)blk)->d);
    case GGML_T_Q2_K: {
        const block_q2_k *b = blk;
        int j = k / 16, half = k / 128, s = (k % 128) / 32, l = k % 32;
        int q = (b->qs[32 * half + l] >> (2 * s)) & 3;
        float dl = h2f(b->d) * (b->scales[j] & 0xF), ml = h2f(b->dmin) * (b->scales[j] >> 4);
        return dl * (float)q - ml;
    }
    case GGML_T_Q3_K: {
        const block_q3_k *b = blk;
        int half = k / 128, s = (k % 128) / 32, l = k % 32;
        int q = ((b->qs[32 * half + l] >> (2 * s)) & 3) - ((b->hmask[k % 32] >> (k / 32)) & 1 ? 0 : 4);
        return h2f(b->d) * (float)q3k_scale(b, k / 16) * (float)q;
    }
    case GGML_T_Q4_K:
    case GGML_T_Q5_K: {
        const uint8_t *sc12 = t == GGML_T_Q4_K ? ((const block_q4_k *)blk)->scales : ((const block_q5_k *)blk)->scales;
        const uint8_t *qs = t == GGML_T_Q4_K ? ((const block_q4_k *)blk)->qs : ((const block_q5_k *)blk)->qs;
        ggml_fp16 hd = t == GGML_T_Q4_K ? ((const block_q4_k *)blk)->d : ((const block_q5_k *)blk)->d;
        ggml_fp16 hm = t == GGML_T_Q4_K ? ((const block_q4_k *)blk)->dmin : ((const block_q5_k *)blk)->dmin;
        int p = k / 64, hi = (k % 64) / 32, l = k % 32;
        int q = (qs[32 * p + l] >> (4 * hi)) & 0xF;
        if (t == GGML_T_Q5_K) q |= ((((const block_q5_k *)blk)->qh[l] >> (2 * p + hi)) & 1) << 4;
        uint8_t sc, m;
        scale_min_k4(k / 32, sc12, &sc, &m);
        return h2f(hd) * sc * (float)q - h2f(hm) * m;
    }
    case GGML_T_Q6_K: {
        const block_q6_k *b = blk;
        int half = k / 128, s = (k % 128) / 32, l = k % 32;
        int lo = (b->ql[64 * half + l + 32 * (s & 1)] >> (4 * (s >> 1))) & 0xF;
        int hi = (b->qh[32 * half + l] >> (2 * s)) & 3;
        return h2f(b->d) * b->scales[k / 16] * (float)((lo | hi << 4) - 32);
    }
    default: return 0.0f;
    }
}

void ggml_dequantize_rows(ggml_type t, const void *src, int64_t nrows, int64_t ne0, float *dst) {
    const int64_t n = nrows * ne0;
    switch (t) {
    case GGML_T_F32: memcpy(dst, src, sizeof(float) * (size_t)n); return;
    case GGML_T_F16: convert_to_f32(dst, src, DT_F16, (size_t)n); return;
    case GGML_T_BF16: convert_to_f32(dst, src, DT_BF16, (size_t)n); return;
    default: break;
    }
    const ggml_type_traits *tr = ggml_traits(t);
    const int64_t nb = n / tr->block_size;
    const char *in = src;
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (int64_t i = 0; i < nb; i++)
        for (int k = 0; k < tr->block_size; k++) dst[i * tr->block_size + k] = block_value(t, in + i * tr->type_size, k);
}

/* ---------------- public: per-block grids for GPTQ ---------------- */

void ggml_block_fit(ggml_type t, const float *x, void *blk) {
    const ggml_type_traits *tr = ggml_traits(t);
    memset(blk, 0, (size_t)tr->type_size);
    switch (t) {
    case GGML_T_Q4_0: {
        float amax, max;
        absmax_signed(x, 32, &amax, &max);
        ((block_q4_0 *)blk)->d = f2h(max / -8);
        break;
    }
    case GGML_T_Q5_0: {
        float amax, max;
        absmax_signed(x, 32, &amax, &max);
        ((block_q5_0 *)blk)->d = f2h(max / -16);
        break;
    }
    case GGML_T_Q4_1:
    case GGML_T_Q5_1: {
        float min, max;
        min_max(x, 32, &min, &max);
        const float d = (max - min) / (t == GGML_T_Q4_1 ? 15 : 31);
        if (t == GGML_T_Q4_1) ((block_q4_1 *)blk)->d = f2h(d), ((block_q4_1 *)blk)->m = f2h(min);
        else ((block_q5_1 *)blk)->d = f2h(d), ((block_q5_1 *)blk)->m = f2h(min);
        break;
    }
    case GGML_T_Q8_0: {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        ((block_q8_0 *)blk)->d = f2h(amax / 127);
        break;
    }
    default: {
        uint8_t L[QK_K];
        fit_kquant(t, x, blk, L);
        /* codes of zero-scale sub-blocks as the reference leaves them */
        for (int k = 0; k < QK_K; k++) {
            float v;
            int zero;
            kquant_code(t, blk, k, 0.0f, &v, &zero);
            if (zero) set_code(t, blk, k, L[k]);
        }
        break;
    }
    }
}

/* Nearest code for the legacy formats on the stored (fp16) grid. */
static int legacy_code(ggml_type t, const void *blk, float x) {
    switch (t) {
    case GGML_T_Q4_0: {
        float d = h2f(((const block_q4_0 *)blk)->d);
        return d ? clampi(nearest_int_sat(x / d) + 8, 0, 15) : 8;
    }
    case GGML_T_Q5_0: {
        float d = h2f(((const block_q5_0 *)blk)->d);
        return d ? clampi(nearest_int_sat(x / d) + 16, 0, 31) : 16;
    }
    case GGML_T_Q4_1: {
        float d = h2f(((const block_q4_1 *)blk)->d), m = h2f(((const block_q4_1 *)blk)->m);
        return d ? clampi(nearest_int_sat((x - m) / d), 0, 15) : 0;
    }
    case GGML_T_Q5_1: {
        float d = h2f(((const block_q5_1 *)blk)->d), m = h2f(((const block_q5_1 *)blk)->m);
        return d ? clampi(nearest_int_sat((x - m) / d), 0, 31) : 0;
    }
    case GGML_T_Q8_0: {
        float d = h2f(((const block_q8_0 *)blk)->d);
        return d ? clampi(nearest_int_sat(x / d), -128, 127) : 0;
    }
    default: return 0;
    }
}

float ggml_block_quant(ggml_type t, void *blk, int k, float x) {
    if (ggml_traits(t)->block_size == QK_K) {
        float v;
        int zero;
        int q = kquant_code(t, blk, k, x, &v, &zero);
        if (!zero) set_code(t, blk, k, q);
        return block_value(t, blk, k);
    }
    set_code(t, blk, k, legacy_code(t, blk, x));
    return block_value(t, blk, k);
}
