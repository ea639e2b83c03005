/* A Hugging Face Llama checkpoint directory as a GGUF file that stock llama.cpp runs.
 *
 * Metadata: general.* (architecture "llama", name, file_type, quantization_version),
 * llama.* hyper-parameters (context_length, embedding_length, block_count,
 * feed_forward_length, rope.dimension_count, rope.freq_base, attention.head_count(_kv),
 * layer_norm_rms_epsilon, vocab_size, key/value_length when head_dim != dim/heads, linear
 * rope scaling; llama3 rope scaling as the rope_freqs.weight factors), and the tokenizer
 * (gguf_vocab.h).
 *
 * Tensors, with llama.cpp's names: token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v,
 * attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, output (absent when the
 * embeddings are tied).  Norms stay f32.  attn_q / attn_k rows are permuted as llama.cpp's
 * converter does: HF rotates the two halves of each head (rotate_half), ggml's "normal"
 * RoPE rotates adjacent pairs, so row h·d + 2i + j of the GGUF weight is row h·d + j·d/2 + i
 * of the HF weight (d = head_dim, j ∈ {0, 1}).  Rows are independent under every block
 * format, so quantized rows are permuted as whole rows.
 *
 * Type per weight: the requested type where the row length (input width) is a multiple of
 * its block size; otherwise a documented fallback, with a warning naming the tensor:
 *   q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0, q2_k / q3_k -> q4_0  (llama.cpp's choices,
 *   except that llama.cpp takes iq4_nl for q2_k / q3_k, a format we do not write),
 *   then any 32-block type -> f16 if the width is not a multiple of 32 either. */
#ifndef GPTQ_IO_GGUF_EXPORT_H
#define GPTQ_IO_GGUF_EXPORT_H

#include <stddef.h>

#include "io/ggml_types.h"

typedef struct {
    ggml_type type;   /* of every 2-D weight, token_embd and output included */
    /* Optional source of already-quantized weights (GPTQ): for the HF tensor `hf_name`
     * ("model.layers.0.self_attn.q_proj.weight"), returns 1 and sets *t and *data (rows in
     * HF order, ggml_row_size(*t, in) bytes each; borrowed until the export returns), or 0
     * to have the weight quantized from its float values with the plain quantizer. */
    int (*provide)(void *ctx, const char *hf_name, ggml_type *t, const void **data);
    void *ctx;
    const char *name; /* general.name (default: the directory's base name) */
    /* Optional: take each weight's type from the tensor of the same name in this GGUF file
     * (e.g. a llama-quantize output, to get its per-tensor mix) instead of `type`. */
    const struct gguf_file_s *types_from;
} gguf_export_opts;

/* llama.cpp's name of a Hugging Face tensor ("model.layers.3.mlp.down_proj.weight" ->
 * "blk.3.ffn_down.weight"); 0, or -1 if it has none. */
int gguf_tensor_name(const char *hf_name, char *out, size_t n);
/* The type `types_from` gives the HF tensor hf_name, or `dflt` without types_from;
 * -1 with an error if that file lacks the tensor or holds a type we cannot write. */
int gguf_type_for(const struct gguf_file_s *types_from, const char *hf_name, ggml_type dflt);

/* The type a weight of row length ne0 gets when `want` is requested (see above). */
ggml_type gguf_fallback_type(ggml_type want, int64_t ne0);

/* Writes dir as a GGUF file at out (atomically).  Returns 0 or -1 with an error. */
int gguf_export_model(const char *dir, const char *out, const gguf_export_opts *o);

#endif
