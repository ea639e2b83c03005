/* Random-weight checkpoints of real shapes (gptq random-model).
 *
 * Writes a Hugging Face model directory that every other command accepts: config.json,
 * generation_config.json, tokenizer.json + tokenizer_config.json (a synthetic byte-level
 * BPE of exactly vocab_size tokens, see text/tokenizer_synth.h), and the weights as
 * safetensors, sharded like transformers does (model-0000k-of-0000N.safetensors +
 * model.safetensors.index.json; a single model.safetensors when it fits in one shard).
 *
 * Weights are scaled like a freshly initialised / trained Llama (initializer_range 0.02):
 *   embed_tokens, lm_head, q/k/v/gate/up_proj   N(0, 0.02^2)
 *   o_proj, down_proj                           N(0, (0.02 / sqrt(2 n_layers))^2)
 *   input/post_attention/final norm weights     1 + N(0, 0.02^2)
 *   biases (qwen2, attention_bias, mlp_bias)    N(0, 0.02^2)
 * With RMS-normed unit inputs, q/k/v/gate/up outputs have std 0.02*sqrt(dim) (1.28 at dim
 * 4096), the residual stream stays O(1) at any depth thanks to the scaled o/down
 * projections, and logits have std ~0.02*sqrt(dim): no fp16 overflow anywhere, and the
 * next-token distribution is spread but not uniform.
 *
 * Normal samples come from a 65536-entry inverse-CDF table (quantiles (i+0.5)/65536,
 * tails cut at 4.3 sigma, finer than fp16 resolution at these scales), indexed by 16-bit
 * slices of a counter-based hash: element e of a tensor uses bits 16*(e%4).. of
 * splitmix64(key + (e/4 + 1) * golden), key derived from the seed and the tensor's name.
 * The output is therefore identical for any thread count, and a tensor's values do not
 * depend on which other tensors exist (except that o/down scale with n_layers).
 *
 * Output is atomic: everything goes to "<DIR>.tmp.<pid>/", renamed to DIR when complete;
 * on failure (or cancellation) the temporary directory is removed. */
#ifndef GPTQ_MODEL_RANDOM_MODEL_H
#define GPTQ_MODEL_RANDOM_MODEL_H

#include <signal.h>
#include <stdint.h>

#include "io/hf_config.h"

/* Built-in shapes (published configs):
 *  llama2-7b       4096 x 11008, 32 layers, 32 heads / 32 KV, vocab 32000, ctx 4096, theta 1e4,
 *                  BOS 1 EOS 2, fp16
 *  llama3-8b       4096 x 14336, 32 layers, 32 heads / 8 KV, vocab 128256, theta 5e5, BOS 128000
 *                  EOS 128001, bf16, with Llama-3.1's rope_scaling (llama3: factor 8, low 1,
 *                  high 4, original 8192) but max_position_embeddings 8192 (Llama-3's), so
 *                  that tools sizing a KV cache from it stay practical
 *  tinyllama-1.1b  2048 x 5632, 22 layers, 32 heads / 4 KV, vocab 32000, ctx 2048, theta 1e4,
 *                  BOS 1 EOS 2, bf16
 * All untied, rms_norm_eps 1e-5.  Returns 0, or -1 + error for an unknown name; *native
 * gets the shape's published dtype. */
int random_model_shape(const char *name, hf_config *c, gptq_dtype *native);
/* "llama2-7b, llama3-8b, tinyllama-1.1b" */
const char *random_model_shape_names(void);

/* Overrides num_hidden_layers (> 0) and/or vocab_size (> 0; 0 = keep).  Specials that sit
 * at the top of the vocabulary (Llama-3) move with its end; others must stay inside it. */
int random_model_override(hf_config *c, int n_layers, int vocab_size);

typedef struct {
    gptq_dtype dtype;                /* F16, BF16 or F32 */
    uint64_t seed;
    double max_shard_bytes;          /* <= 0: 5e9, as transformers' default max_shard_size */
    int force;                       /* replace DIR if it exists (only a model directory, i.e.
                                      * one with a config.json, or an empty one) */
    volatile sig_atomic_t *cancel;   /* optional: set non-zero to abort (e.g. from SIGINT) */
    int progress;                    /* draw a progress line on a terminal */
} random_model_opts;

typedef struct {
    int64_t n_params;
    int64_t total_bytes;             /* tensor data bytes */
    int n_shards;                    /* safetensors files written */
} random_model_info;

/* Writes the checkpoint for config c (bos/eos filled in when the config lacks them:
 * 1 and 2). info may be NULL. */
int random_model_write(const hf_config *c, const random_model_opts *o, const char *dir, random_model_info *info);

#endif
