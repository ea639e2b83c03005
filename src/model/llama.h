/* The Llama-family model (llama, mistral, qwen2): weights and the forward pass.
 *
 * Weights stay in their file dtype, memory-mapped; compute is fp32.  One forward call
 * processes n consecutive tokens at positions pos0..pos0+n-1 against the KV cache
 * (n > 1: batched prefill through BLAS; n == 1: decode through GEMV). */
#ifndef GPTQ_MODEL_LLAMA_H
#define GPTQ_MODEL_LLAMA_H

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/linear.h"

/* The seven Linear layers of a block, in the order the block uses them. */
typedef enum { LIN_Q = 0, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT } llama_linear_id;
/* "self_attn.q_proj", ..., "mlp.down_proj": the HF module name inside a layer. */
const char *llama_linear_name(llama_linear_id id);

typedef struct {
    float *attn_norm; /* (dim) input_layernorm */
    float *ffn_norm;  /* (dim) post_attention_layernorm */
    linear lin[LIN_COUNT];
    /* lin[LIN_Q]    (n_heads*head_dim, dim)
     * lin[LIN_K]    (n_kv_heads*head_dim, dim)
     * lin[LIN_V]    (n_kv_heads*head_dim, dim)
     * lin[LIN_O]    (dim, n_heads*head_dim)
     * lin[LIN_GATE] (hidden_dim, dim)
     * lin[LIN_UP]   (hidden_dim, dim)
     * lin[LIN_DOWN] (dim, hidden_dim) */
} llama_layer;

typedef struct {
    hf_config cfg;
    char *dir;
    st_archive st;         /* keeps the memory maps alive */
    const void *tok_embed; /* (vocab, dim) in embed_dtype, in the memory map */
    gptq_dtype embed_dtype;
    llama_layer *layers;   /* (n_layers) */
    float *final_norm;     /* (dim) */
    linear lm_head;        /* (vocab, dim); borrows tok_embed when tied */
    float *rope_inv_freq;  /* (head_dim/2), scaling applied */
    int64_t n_params;      /* parameters in the checkpoint (tied counted once) */
    int load_flags;        /* LLAMA_LOAD_* */
    void *gguf;            /* gguf_file * when loaded from a GGUF file (keeps its map alive), else NULL */
    float *embed_owned;    /* (vocab, dim) dequantized embeddings when the file's are quantized, else NULL */
} llama_model;

/* llama_load_ex flags. */
#define LLAMA_LOAD_DEQUANTIZE 1 /* GPTQ layers to fp32 at load instead of the packed fused kernels */

/* Loads DIR/config.json and DIR's safetensors; every tensor's shape and dtype is checked
 * against the config.  DIR may also be a GGUF file (llama_load_gguf). */
int llama_load(llama_model *m, const char *dir);
int llama_load_ex(llama_model *m, const char *dir, int flags);
/* Loads a llama-architecture GGUF file (model/llama_gguf.c): hyper-parameters from its
 * metadata, float tensors borrowed from the map, q4_0 / q8_0 weights repacked for the fused
 * kernels (unless LLAMA_LOAD_DEQUANTIZE), other block types dequantized to fp32, attn_q /
 * attn_k rows un-permuted back to the Hugging Face layout. */
int llama_load_gguf(llama_model *m, const char *path, int flags);
/* Frees what llama_load_gguf added (called by llama_free). */
void llama_gguf_release(llama_model *m);
/* Bytes of Linear weights (packed or dense, lm_head included) one decode step streams. */
int64_t llama_weight_bytes(const llama_model *m);
void llama_free(llama_model *m);

/* Called with the input of every Linear as the forward pass reaches it (x is (n, in)),
 * so that calibration can accumulate Hessians. */
typedef void (*llama_observer)(void *ctx, int layer, llama_linear_id id, const float *x, int n, int64_t in);

typedef struct {
    int max_seq;    /* KV cache positions */
    int max_batch;  /* most tokens per forward call */
    int n_threads;  /* attention scratch rows */
    int cache_layers; /* n_layers, or 1: one cache shared by all layers (layer-by-layer work),
                       * or n_layers*B: B sequences advanced in lock-step (llama_forward_lockstep) */
    int lockstep;     /* set during llama_forward_lockstep */
    float *k_cache; /* (cache_layers, max_seq, n_kv_heads*head_dim) */
    float *v_cache; /* (cache_layers, max_seq, n_kv_heads*head_dim) */
    float *x;       /* (max_batch, dim) residual stream */
    float *xn;      /* (max_batch, max(dim, hidden_dim)) normed input of a sub-block */
    float *q;       /* (max_batch, n_heads*head_dim) */
    float *kv;      /* (max_batch, 2*n_kv_heads*head_dim) new keys then values */
    float *att_out; /* (max_batch, n_heads*head_dim) */
    float *hb;      /* (max_batch, hidden_dim) gate */
    float *hb2;     /* (max_batch, hidden_dim) up */
    float *out;     /* (max_batch, max(dim, hidden_dim)) output of a Linear */
    float *scores;  /* (max(n_threads, max_batch), max_seq) attention scores */
    float *cos, *sin; /* (max_batch, head_dim/2) rotary table of the current call */
    float *logits;  /* (max_batch, vocab) */
    llama_observer observer;
    void *observer_ctx;
} llama_state;

llama_state *llama_state_new(const llama_model *m, int max_seq, int max_batch);
/* With cache_layers == 1 every layer uses the same KV cache rows: enough when a whole
 * sequence goes through one layer before the next (calibration), at 1/n_layers the memory. */
llama_state *llama_state_new_ex(const llama_model *m, int max_seq, int max_batch, int cache_layers);
void llama_state_free(llama_state *s);

/* Token embeddings of ids (n) into x (n, dim). Ids must be < vocab (checked by callers). */
void llama_embed(const llama_model *m, const int *ids, int n, float *x);
/* out (n, dim) = x / rms(x) * w, row by row; out may be x. */
void llama_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps);
/* Attention core of a block: from normed input xn (n, dim) at positions pos0.., projects
 * q/k/v, applies RoPE, appends k/v to the cache and writes the attention output (before
 * o_proj) to att_out (n, n_heads*head_dim). */
void llama_attention(const llama_model *m, llama_state *s, int layer, const float *xn, int n, int pos0, float *att_out);
/* MLP activation: act (n, hidden_dim) = silu(gate(xn)) * up(xn) (the input of down_proj). */
void llama_mlp_act(const llama_model *m, llama_state *s, int layer, const float *xn, int n, float *act);
/* One decoder block on x (n rows) at positions pos0.., updating its KV cache. */
void llama_block_forward(const llama_model *m, llama_state *s, int layer, float *x, int n, int pos0);
/* Embeds, runs every block and the final norm: s->x holds (n, dim) normed hidden states. */
void llama_forward_hidden(const llama_model *m, llama_state *s, const int *ids, int n, int pos0);
/* Logits (n, vocab) of n hidden rows into out. */
void llama_logits(const llama_model *m, const float *hidden, int n, float *out);
/* Full step: returns s->logits with the logits of the last token (all_logits == 0) or of
 * all n tokens (n, vocab). */
const float *llama_forward(const llama_model *m, llama_state *s, const int *ids, int n, int pos0, int all_logits);

/* B = n independent sequences, one new token each, all at position pos (sampling many
 * sequences from BOS at once: the weights are read once per step for all of them).
 * s must come from llama_state_new_ex(m, max_seq, B, n_layers * B). Returns (n, vocab) logits. */
const float *llama_forward_lockstep(const llama_model *m, llama_state *s, const int *ids, int n, int pos);

#endif
