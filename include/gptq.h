/* gptq — public C API.
 *
 * Load a Hugging Face Llama-family checkpoint directory, tokenize, run it, and measure
 * perplexity.  Every function that can fail returns a negative value or NULL and leaves a
 * one-line message for gptq_last_error().  Handles are not thread-safe; use one per thread. */
#ifndef GPTQ_H
#define GPTQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPTQ_VERSION "0.1.0"

typedef struct gptq_model gptq_model;

typedef struct {
    const char *model_type; /* "llama", "mistral", "qwen2" */
    int n_layers, dim, hidden_dim, n_heads, n_kv_heads, head_dim, vocab_size, max_pos;
    int64_t n_params;
} gptq_model_info;

/* The last error on this thread ("" if none). */
const char *gptq_last_error(void);

/* Opens DIR (config.json, safetensors, tokenizer.json).  max_ctx bounds the KV cache
 * (<= 0: the model's max_position_embeddings). */
gptq_model *gptq_open(const char *dir, int max_ctx);
void gptq_close(gptq_model *m);
void gptq_info(const gptq_model *m, gptq_model_info *out);

/* Tokenizes UTF-8 text; with add_bos the tokenizer's BOS is prepended if it uses one.
 * Returns the number of ids written (at most cap), or -1. If the text needs more than cap
 * ids, returns the number needed without writing past cap. */
int gptq_tokenize(const gptq_model *m, const char *text, size_t len, int add_bos, int *ids, int cap);
/* Decodes ids to a heap string (free()). */
char *gptq_detokenize(const gptq_model *m, const int *ids, int n);

/* Runs n tokens at positions pos..pos+n-1 through the model (the KV cache holds what came
 * before) and returns the logits of the last one (vocab_size floats, valid until the next
 * call), or NULL. */
const float *gptq_eval(gptq_model *m, const int *ids, int n, int pos);

/* Greedy (temperature 0) or sampled continuation of a prompt: a heap string (free()) of
 * the prompt followed by up to n_new tokens; stops at EOS. */
char *gptq_generate(gptq_model *m, const char *prompt, int n_new, float temperature, int top_k, float top_p,
                    uint64_t seed);

/* GPTQ-protocol perplexity of text (tokenized without BOS, non-overlapping windows of ctx
 * tokens, at most max_windows of them if > 0). Returns ppl or a negative value. */
double gptq_perplexity(const gptq_model *m, const char *text, size_t len, int ctx, int max_windows);

#ifdef __cplusplus
}
#endif
#endif
