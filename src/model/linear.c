#include "model/linear.h"

#include <stdlib.h>

#include "kernels/cpu/dense.h"

void linear_forward(const linear *l, float *y, const float *x, int T) {
    dense_matmul(y, x, T, l->w, l->dtype, l->out, l->in);
    if (l->bias) {
        for (int t = 0; t < T; t++) {
            float *yt = y + (int64_t)t * l->out;
            for (int64_t o = 0; o < l->out; o++) yt[o] += l->bias[o];
        }
    }
}

void linear_set_f32(linear *l, float *w) {
    free(l->owned);
    l->owned = w;
    l->w = w;
    l->dtype = DT_F32;
}

void linear_row_f32(const linear *l, int64_t r, float *dst) {
    convert_to_f32(dst, (const char *)l->w + r * l->in * dtype_size(l->dtype), l->dtype, (size_t)l->in);
}

void linear_free(linear *l) {
    free(l->owned);
    free(l->bias);
    l->owned = NULL;
    l->bias = NULL;
    l->w = NULL;
}
