/* Block-format quantization of Linear layers for GGUF (see gguf_quant.h). */
#include "quant/gguf_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf_export.h"
#include "quant/ggml_quants.h"

void gguf_quant_init(gguf_quant *g, ggml_type type, const gptq_params *gp) {
    memset(g, 0, sizeof *g);
    g->type = type;
    g->gp = *gp;
}

void gguf_quant_free(gguf_quant *g) {
    for (int i = 0; i < g->n; i++) free(g->names[i]), free(g->data[i]);
    free(g->names), free(g->types), free(g->data);
    memset(g, 0, sizeof *g);
}

/* The grid hook's state: the layer's packed rows, whose block headers are the grids. */
typedef struct {
    ggml_type t;
    unsigned char *rows; /* (out, row_bytes) */
    size_t row_bytes, block_bytes;
    int block_size;
} block_grid;

static void grid_fit(void *ctx, int64_t row, int64_t group, const float *x) {
    block_grid *b = ctx;
    ggml_block_fit(b->t, x, b->rows + (size_t)row * b->row_bytes + (size_t)group * b->block_bytes);
}

static float grid_quant(void *ctx, int64_t row, int64_t col, float x) {
    block_grid *b = ctx;
    unsigned char *blk = b->rows + (size_t)row * b->row_bytes + (size_t)(col / b->block_size) * b->block_bytes;
    return ggml_block_quant(b->t, blk, (int)(col % b->block_size), x);
}

int gguf_quant_linear(void *ctx, const char *name, const float *w, const float *h, int64_t out, int64_t in, float **wq,
                      quant_layer_report *rep) {
    gguf_quant *g = ctx;
    char nm[160];
    snprintf(nm, sizeof nm, "%s.weight", name);
    int want = gguf_type_for(g->types_from, nm, g->type);
    if (want < 0) return -1;
    const ggml_type t = gguf_fallback_type((ggml_type)want, in);
    const ggml_type_traits *tr = ggml_traits(t);
    if (t != (ggml_type)want)
        gptq_warn("%s: input width %lld is not a multiple of %s's block of %d; written as %s", name, (long long)in,
                  ggml_traits((uint32_t)want)->name, ggml_traits((uint32_t)want)->block_size, tr->name);
    const size_t rb = ggml_row_size(t, in);
    unsigned char *rows = xmalloc(rb * (size_t)out);
    float *dq = xaligned_alloc(sizeof(float) * (size_t)(out * in));
    if (tr->block_size == 1 || h == NULL) {
        /* float fallback, or RTN: the reference quantizer */
        ggml_quantize_rows(t, w, out, in, rows);
        ggml_dequantize_rows(t, rows, out, in, dq);
    } else {
        block_grid bg = {t, rows, rb, (size_t)tr->type_size, tr->block_size};
        gptq_grid_hook hook = {tr->block_size, grid_fit, grid_quant, &bg};
        gptq_params gp = g->gp;
        gp.grid_hook = &hook;
        gp.want_rel_err = 1;
        gptq_result res;
        if (gptq_quantize(w, h, out, in, &gp, &res) != 0) {
            free(rows);
            free(dq);
            return -1;
        }
        memcpy(dq, res.q.wq, sizeof(float) * (size_t)(out * in));
        rep->loss = res.loss;
        rep->rel_err = res.rel_err;
        rep->damp_retries = res.damp_retries;
        rep->dead = res.dead;
        if (res.damp_retries) gptq_warn("%s: Hessian not positive definite; damping raised to %g", name, res.damp_used);
        gptq_result_free(&res);
    }
    rep->bpw = 8.0 * (double)tr->type_size / tr->block_size;
    g->names = xrealloc(g->names, sizeof(char *) * (size_t)(g->n + 1));
    g->types = xrealloc(g->types, sizeof(ggml_type) * (size_t)(g->n + 1));
    g->data = xrealloc(g->data, sizeof(void *) * (size_t)(g->n + 1));
    g->names[g->n] = xstrdup(nm);
    g->types[g->n] = t;
    g->data[g->n] = rows;
    g->n++;
    *wq = dq;
    return 0;
}

int gguf_quant_provide(void *ctx, const char *hf_name, ggml_type *t, const void **data) {
    gguf_quant *g = ctx;
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->names[i], hf_name) == 0) {
            *t = g->types[i];
            *data = g->data[i];
            return 1;
        }
    return 0;
}
