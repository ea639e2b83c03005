#include "model/linear.h"

#include <stdlib.h>

#include "core/error.h"
#include "kernels/cpu/dense.h"
#include "kernels/cpu/qmatmul.h"

void linear_forward(const linear *l, float *y, const float *x, int T) {
    if (l->qk) qk_matmul(l->qk, y, x, T);
    else dense_matmul(y, x, T, l->w, l->dtype, l->out, l->in);
    if (l->bias) {
        for (int t = 0; t < T; t++) {
            float *yt = y + (int64_t)t * l->out;
            for (int64_t o = 0; o < l->out; o++) yt[o] += l->bias[o];
        }
    }
}

void linear_forward_multi(const linear *const *l, float *const *y, int n, const float *x, int T) {
    int fused = T == 1 && n <= QK_MULTI_MAX && qk_decode_q8_enabled();
    const qk_layer *q[QK_MULTI_MAX];
    for (int i = 0; fused && i < n; i++) {
        fused = l[i]->qk && !l[i]->bias;
        if (fused) q[i] = l[i]->qk;
    }
    if (fused && qk_gemv_q8_multi(q, y, n, x)) return;
    for (int i = 0; i < n; i++) linear_forward(l[i], y[i], x, T);
}

static void drop_weight(linear *l) {
    free(l->owned);
    l->owned = NULL;
    l->w = NULL;
    if (l->qk) {
        qk_free(l->qk);
        free(l->qk);
        l->qk = NULL;
    }
}

void linear_set_f32(linear *l, float *w) {
    drop_weight(l);
    l->owned = w;
    l->w = w;
    l->dtype = DT_F32;
}

void linear_set_qk(linear *l, qk_layer *q) {
    drop_weight(l);
    l->qk = xmalloc(sizeof *q);
    *l->qk = *q;
}

void linear_row_f32(const linear *l, int64_t r, float *dst) {
    if (!l->qk) {
        convert_to_f32(dst, (const char *)l->w + r * l->in * dtype_size(l->dtype), l->dtype, (size_t)l->in);
        return;
    }
    const qk_layer *q = l->qk;
    if (!q->perm) {
        qk_dequant_rows(q, r, r + 1, dst, QK_PATH_AUTO);
        return;
    }
    /* kernel order -> input order */
    float *tmp = xmalloc(sizeof(float) * q->in_pad);
    qk_dequant_rows(q, r, r + 1, tmp, QK_PATH_AUTO);
    for (int64_t p = 0; p < q->in_pad; p++)
        if (q->perm[p] >= 0) dst[q->perm[p]] = tmp[p];
    free(tmp);
}

int64_t linear_weight_bytes(const linear *l) {
    return l->qk ? qk_stream_bytes(l->qk) : l->out * l->in * (int64_t)dtype_size(l->dtype);
}

void linear_free(linear *l) {
    drop_weight(l);
    free(l->bias);
    l->bias = NULL;
}
