/* GPTQ (or RTN) whose grid is a llama.cpp block format, for GGUF output.
 *
 * Each Linear is quantized on its own: with a Hessian, by GPTQ through the grid hook of
 * gptq.h, each block of block_size columns of a row getting its header (scales, mins,
 * K-quant sub-block scales) from the error-updated weights when the column loop reaches it
 * (from the original weights up front with act-order + static groups), each column coded
 * on it and its rounding error compensated on the columns not yet coded; without one (RTN),
 * by the reference quantizer (byte-identical to llama-quantize without an imatrix).  The
 * packed rows are kept until the GGUF is written (gguf_export_model's provide callback).
 * Layers whose input width is not a multiple of the type's block take the fallback type of
 * gguf_fallback_type (f16 at worst, kept as is). */
#ifndef GPTQ_QUANT_GGUF_QUANT_H
#define GPTQ_QUANT_GGUF_QUANT_H

#include <stdint.h>

#include "io/ggml_types.h"
#include "quant/gptq.h"
#include "quant/pipeline.h"

typedef struct {
    ggml_type type;  /* requested block type */
    const struct gguf_file_s *types_from; /* per-tensor types from this file instead (gguf_export.h), or NULL */
    gptq_params gp;  /* damp, block, act_order, static_groups (bits, group, sym unused) */
    int n;
    char **names;    /* (n) "model.layers.0.self_attn.q_proj.weight" */
    ggml_type *types; /* (n) type actually used */
    void **data;     /* (n) packed rows, HF row order */
} gguf_quant;

void gguf_quant_init(gguf_quant *g, ggml_type type, const gptq_params *gp);
void gguf_quant_free(gguf_quant *g);

/* The pipeline's per-Linear hook (quant_linear_hook in pipeline.h); ctx is a gguf_quant. */
int gguf_quant_linear(void *ctx, const char *name, const float *w, const float *h, int64_t out, int64_t in, float **wq,
                      quant_layer_report *rep);
/* gguf_export_opts.provide: the packed rows of hf_name if quantized here. */
int gguf_quant_provide(void *ctx, const char *hf_name, ggml_type *t, const void **data);

#endif
