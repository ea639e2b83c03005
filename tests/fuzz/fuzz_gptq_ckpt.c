/* The GPTQ checkpoint loader: one quantized Linear "l" (l.qweight, l.qzeros, l.scales,
 * l.g_idx) read from a fuzzed .safetensors, by the dequantizing loader and by the packed
 * one the model runs on (which must agree).  The first 5 bytes choose the layer settings
 * the config would give (see settings()); the rest is the file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fuzz.h"
#include "io/gptq_checkpoint.h"
#include "kernels/cpu/qmatmul.h"

#define SETTINGS 5

/* Mostly shapes the format allows (so that the tensors get looked at), sometimes any. */
static void settings(const uint8_t *d, hf_quant_config *qc, int64_t *out, int64_t *in) {
    static const int bits[4] = {2, 3, 4, 8};
    static const int groups[8] = {-1, 32, 64, 128, 16, 8, 3, 1};
    memset(qc, 0, sizeof *qc);
    qc->present = 1;
    qc->bits = bits[d[0] & 3];
    qc->group_size = groups[d[1] & 7];
    *out = d[2] < 200 ? (d[2] % 8 + 1) * 16 : d[2] - 199;
    *in = d[3] < 200 ? (d[3] % 4 + 1) * 32 : d[3] - 199;
    qc->format_v2 = d[4] & 1;
    qc->desc_act = (d[4] >> 1) & 1;
    qc->sym = (d[4] >> 2) & 1;
}

int fuzz_gptq_ckpt(const uint8_t *data, size_t n) {
    if (n < SETTINGS) return 0;
    hf_quant_config qc;
    int64_t out, in;
    settings(data, &qc, &out, &in);
    st_archive a;
    if (st_open_memory(&a, "model.safetensors", data + SETTINGS, n - SETTINGS) != 0) return 0;
    float *w = NULL;
    int rc = gptq_ckpt_load_linear(&a, &qc, "l", out, in, &w);
    if (rc < 0) FUZZ_ASSERT(gptq_last_error()[0] && w == NULL, "failure without a message, or with a result");
    else if (rc == 0) FUZZ_ASSERT(st_find(&a, "l.qweight") == NULL, "a quantized layer reported as absent");
    else FUZZ_ASSERT(w != NULL, "success without weights");

    /* The packed path the model runs on must accept exactly what the dequantizing one does,
     * and multiply like the dequantized weights. */
    qk_layer L;
    memset(&L, 0, sizeof L);
    int rq = gptq_ckpt_load_qk(&a, &qc, "l", out, in, &L);
    FUZZ_ASSERT(rq == rc, "dequantizing load gives %d, packed load %d (%s)", rc, rq, gptq_last_error());
    if (rc == 1 && rq == 1) {
        const int T = 2; /* (T = 1 may take the approximate int8 decode path) */
        float *x = xmalloc(sizeof(float) * T * in), *y = xmalloc(sizeof(float) * T * out);
        for (int64_t i = 0; i < T * in; i++) x[i] = (float)((i * 7919) % 17) / 8.0f - 1.0f;
        qk_matmul(&L, y, x, T);
        for (int t = 0; t < T; t++)
            for (int64_t o = 0; o < out; o++) {
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < in; i++) {
                    ref += (double)w[o * in + i] * x[t * in + i];
                    mag += fabs((double)w[o * in + i] * x[t * in + i]);
                }
                if (!isfinite(mag) || mag > 1e30) continue; /* fuzzed fp16 scales can be Inf/NaN */
                FUZZ_ASSERT(fabs(y[t * out + o] - ref) <= 1e-4 * mag + 1e-6, "row %lld: packed %g vs dequantized %g",
                            (long long)o, y[t * out + o], ref);
            }
        free(x), free(y);
    }
    if (rq == 1) qk_free(&L);
    free(w);
    st_close(&a);
    return 0;
}
