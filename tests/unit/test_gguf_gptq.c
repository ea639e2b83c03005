/* GPTQ on llama.cpp block grids (quant/gguf_quant.c through gptq.c's grid hook): the packed
 * blocks dequantize exactly to the weights GPTQ compensated against, the output error
 * tr(ΔW H ΔWᵀ) is below plain rounding's for every type, act-order works in its
 * static-groups form only, and widths a type cannot hold take the documented fallback. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "io/gguf_export.h"
#include "quant/ggml_quants.h"
#include "quant/gguf_quant.h"
#include "quant/hessian.h"

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static double ur(void) {
    rs ^= rs >> 12, rs ^= rs << 25, rs ^= rs >> 27;
    return ((double)((rs * 0x2545f4914f6cdd1dull) >> 11) + 0.5) / 9007199254740992.0;
}
static float nr(void) { return (float)(sqrt(-2.0 * log(ur())) * cos(6.283185307179586 * ur())); }

/* Inputs with correlated features of unequal scale (as activations are), H = 2XᵀX/n. */
static float *make_hessian(int64_t in, int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)(n * in));
    for (int64_t s = 0; s < n; s++) {
        float common = nr();
        for (int64_t i = 0; i < in; i++)
            x[s * in + i] = (0.3f + (float)(i % 7)) * (0.6f * nr() + 0.4f * common) + (i % 61 == 3 ? 4.0f * nr() : 0);
    }
    hessian_acc a;
    hessian_init(&a, in);
    hessian_add(&a, x, n, n);
    hessian_finalize(&a);
    free(x);
    float *h = a.h;
    a.h = NULL;
    hessian_free(&a);
    return h;
}

static double out_err(const float *w, const float *wq, int64_t out, int64_t in, const float *h) {
    float *d = malloc(sizeof(float) * (size_t)(out * in));
    for (int64_t k = 0; k < out * in; k++) d[k] = w[k] - wq[k];
    double e = hessian_quad(d, out, in, h);
    free(d);
    return e;
}

static void run(ggml_type t, int act_order, const float *w, const float *h, int64_t out, int64_t in) {
    const char *tn = ggml_traits(t)->name;
    gptq_params gp = gptq_default_params();
    gp.act_order = act_order;
    gp.static_groups = act_order;
    gguf_quant g;
    gguf_quant_init(&g, t, &gp);
    quant_layer_report rep;
    memset(&rep, 0, sizeof rep);
    float *wq = NULL;
    int rc = gguf_quant_linear(&g, "model.layers.0.mlp.up_proj", w, h, out, in, &wq, &rep);
    CHECK(rc == 0, "%s: %s", tn, gptq_last_error());
    if (rc) return;
    ggml_type got;
    const void *rows;
    CHECK(gguf_quant_provide(&g, "model.layers.0.mlp.up_proj.weight", &got, &rows) == 1 && got == t, "%s provided", tn);
    float *back = malloc(sizeof(float) * (size_t)(out * in));
    ggml_dequantize_rows(t, rows, out, in, back);
    CHECK(memcmp(back, wq, sizeof(float) * (size_t)(out * in)) == 0, "%s: blocks do not hold GPTQ's weights", tn);
    unsigned char *ref = malloc(ggml_row_size(t, in) * (size_t)out);
    ggml_quantize_rows(t, w, out, in, ref);
    ggml_dequantize_rows(t, ref, out, in, back);
    double e_gptq = out_err(w, wq, out, in, h), e_rtn = out_err(w, back, out, in, h);
    printf("%-5s act-order %d: output error GPTQ %.4g vs rounding %.4g (%.2fx), bpw %.3f\n", tn, act_order, e_gptq, e_rtn,
           e_rtn / e_gptq, rep.bpw);
    CHECK(e_gptq < 0.8 * e_rtn, "%s: GPTQ error %g not well below rounding's %g", tn, e_gptq, e_rtn);
    CHECK(fabs(rep.bpw - 8.0 * ggml_traits(t)->type_size / ggml_traits(t)->block_size) < 1e-9, "%s bpw", tn);
    free(ref);
    free(back);
    free(wq);
    gguf_quant_free(&g);
}

int main(void) {
    const int64_t out = 24, in = 512;
    float *h = make_hessian(in, 2048);
    float *w = malloc(sizeof(float) * (size_t)(out * in));
    for (int64_t k = 0; k < out * in; k++) w[k] = 0.02f * nr() + (k % 97 == 0 ? 0.1f : 0.0f);
    const ggml_type types[] = {GGML_T_Q4_0, GGML_T_Q4_1, GGML_T_Q5_0, GGML_T_Q8_0, GGML_T_Q2_K,
                               GGML_T_Q3_K, GGML_T_Q4_K, GGML_T_Q5_K, GGML_T_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) run(types[i], 0, w, h, out, in);
    run(GGML_T_Q4_0, 1, w, h, out, in);
    run(GGML_T_Q3_K, 1, w, h, out, in);

    /* act-order needs static groups with block grids */
    gptq_params gp = gptq_default_params();
    gp.act_order = 1;
    gguf_quant g;
    gguf_quant_init(&g, GGML_T_Q4_0, &gp);
    quant_layer_report rep;
    memset(&rep, 0, sizeof rep);
    float *wq = NULL;
    CHECK(gguf_quant_linear(&g, "x", w, h, out, in, &wq, &rep) != 0 && strstr(gptq_last_error(), "static groups"),
          "act-order without static groups: %s", gptq_last_error());
    gguf_quant_free(&g);

    /* widths: q4_k on 160 columns falls back to q5_0, q4_0 on 48 to f16 */
    CHECK(gguf_fallback_type(GGML_T_Q4_K, 160) == GGML_T_Q5_0, "q4_k fallback");
    CHECK(gguf_fallback_type(GGML_T_Q3_K, 1408) == GGML_T_Q4_0, "q3_k fallback");
    CHECK(gguf_fallback_type(GGML_T_Q6_K, 96) == GGML_T_Q8_0, "q6_k fallback");
    CHECK(gguf_fallback_type(GGML_T_Q4_0, 172) == GGML_T_F16, "q4_0 on 172 -> f16");
    CHECK(gguf_fallback_type(GGML_T_Q4_K, 512) == GGML_T_Q4_K, "no fallback when it fits");
    gp.act_order = 0;
    gguf_quant_init(&g, GGML_T_Q4_K, &gp);
    float *h160 = make_hessian(160, 512);
    CHECK(gguf_quant_linear(&g, "model.layers.0.mlp.down_proj", w, h160, out, 160, &wq, &rep) == 0, "160 wide");
    ggml_type got;
    const void *rows;
    CHECK(gguf_quant_provide(&g, "model.layers.0.mlp.down_proj.weight", &got, &rows) == 1 && got == GGML_T_Q5_0,
          "160-wide layer written as q5_0");
    free(wq);
    free(h160);
    gguf_quant_free(&g);
    free(w);
    free(h);
    return check_done();
}
