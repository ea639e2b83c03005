#include "quant/rtn.h"

#include "core/error.h"

int rtn_quantize(const float *w, int64_t out, int64_t in, const quant_grid *grid, int group_size, quant_layer *q) {
    if (quant_check_bits(grid->bits)) return -1;
    if (out <= 0 || in <= 0) return gptq_fail("rtn: bad weight shape (%lld, %lld)", (long long)out, (long long)in);
    if (group_size == 0 || group_size < -1) return gptq_fail("rtn: bad group size %d (expected -1 or > 0)", group_size);
    quant_layer_alloc(q, out, in, grid->bits, group_size, 1);
    int64_t gs = group_size > 0 ? group_size : in;
    int maxq = quant_maxq(grid->bits);
    for (int64_t i = 0; i < in; i++) q->g_idx[i] = (int32_t)(i / gs);
#pragma omp parallel for schedule(static) if (out * in > QUANT_PAR_MIN)
    for (int64_t o = 0; o < out; o++) {
        for (int64_t g = 0; g < q->groups; g++) {
            int64_t c0 = g * gs, c1 = c0 + gs < in ? c0 + gs : in;
            float s;
            int32_t z;
            quant_row_params(w + o * in + c0, c1 - c0, grid, &s, &z);
            q->scales[g * out + o] = s;
            q->zeros[g * out + o] = z;
            for (int64_t i = c0; i < c1; i++) q->wq[o * in + i] = quant_one(w[o * in + i], s, z, maxq, &q->codes[o * in + i]);
        }
    }
    return 0;
}
