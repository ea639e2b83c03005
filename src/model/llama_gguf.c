/* A llama-architecture GGUF file as a llama_model (see llama_load_gguf in llama.h).
 *
 * The hyper-parameters come from the llama.* keys, every tensor's shape is checked
 * against them, float tensors (f32/f16/bf16) are used in place from the file map, and
 * q4_0 and q8_0 weights are GPTQ grids already (symmetric, groups of 32, fp16 scales:
 * value = d·(q − 8), resp. d·q) and are repacked for the fused GPTQ kernels, exactly;
 * the other block types (q4_1, q5_*, K-quants) are dequantized to owned fp32 weights
 * (fused kernels for them are future work), as is everything with LLAMA_LOAD_DEQUANTIZE.  attn_q and attn_k were written with
 * llama.cpp's row permutation for its pairwise RoPE; our forward pass rotates halves as
 * Hugging Face does, so their rows are put back (GGUF row h·d + 2i + j -> HF row
 * h·d + j·d/2 + i). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf.h"
#include "model/llama.h"
#include "kernels/cpu/qmatmul.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_quants.h"

static int is_float_type(ggml_type t) { return t == GGML_T_F32 || t == GGML_T_F16 || t == GGML_T_BF16; }

static gptq_dtype float_dtype(ggml_type t) { return t == GGML_T_F32 ? DT_F32 : t == GGML_T_F16 ? DT_F16 : DT_BF16; }

/* The tensor `name` with dims {ne0, ne1} (ne1 0: a vector of ne0). */
static const gguf_tensor *need(const gguf_file *g, const char *name, int64_t ne0, int64_t ne1) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) {
        gptq_fail("%s: tensor '%s' is missing", g->path, name);
        return NULL;
    }
    int nd = ne1 ? 2 : 1;
    if (t->n_dims != nd || t->ne[0] != ne0 || (ne1 && t->ne[1] != ne1)) {
        if (ne1)
            gptq_fail("%s: tensor '%s' has shape [%lld, %lld, ...] (%d dims); expected [%lld, %lld]", g->path, name,
                      (long long)t->ne[0], (long long)t->ne[1], t->n_dims, (long long)ne0, (long long)ne1);
        else
            gptq_fail("%s: tensor '%s' has %d dims, ne0 %lld; expected a vector of %lld", g->path, name, t->n_dims,
                      (long long)t->ne[0], (long long)ne0);
        return NULL;
    }
    if (!ggml_quant_supported(t->type)) {
        gptq_fail("%s: tensor '%s' has type %s, which we cannot read", g->path, name, ggml_traits(t->type)->name);
        return NULL;
    }
    return t;
}

static float *dequant(const gguf_tensor *t, int64_t rows, int64_t cols) {
    float *w = xaligned_alloc(sizeof(float) * (size_t)(rows * cols));
    ggml_dequantize_rows(t->type, t->data, rows, cols, w);
    return w;
}

static float *load_vec(const gguf_file *g, const char *name, int64_t n) {
    const gguf_tensor *t = need(g, name, n, 0);
    if (!t) return NULL;
    float *v = xmalloc(sizeof(float) * (size_t)n);
    ggml_dequantize_rows(t->type, t->data, 1, n, v);
    return v;
}

/* HF row of GGUF row r of a q/k weight with `heads` heads (identity for heads 0). */
static int64_t unpermuted_row(int64_t r, int64_t rows, int heads) {
    if (heads <= 0) return r;
    int64_t d = rows / heads, half = d / 2, h = r / d, k = r % d;
    return h * d + (k % 2) * half + k / 2;
}

/* A q4_0 / q8_0 tensor as a GPTQ layer (codes, fp16 scales, zero 8 / 128, groups of 32)
 * repacked for the fused kernels into L.  0, or -1 with an error. */
static int blocks_to_qk(const gguf_tensor *t, int64_t rows, int64_t cols, int heads, qk_layer *L) {
    const int is4 = t->type == GGML_T_Q4_0;
    quant_layer q;
    quant_layer_alloc(&q, rows, cols, is4 ? 4 : 8, 32, 0);
    const int64_t nb = cols / 32;
    const size_t rb = ggml_row_size(t->type, cols);
    for (int64_t i = 0; i < cols; i++) q.g_idx[i] = (int32_t)(i / 32);
    for (int64_t r = 0; r < rows; r++) {
        const int64_t hr = unpermuted_row(r, rows, heads);
        const unsigned char *row = (const unsigned char *)t->data + (size_t)r * rb;
        uint8_t *codes = q.codes + hr * cols;
        for (int64_t b = 0; b < nb; b++) {
            ggml_fp16 d;
            if (is4) {
                block_q4_0 blk;
                memcpy(&blk, row + b * sizeof blk, sizeof blk);
                d = blk.d;
                for (int j = 0; j < 16; j++) {
                    codes[b * 32 + j] = blk.qs[j] & 0xF;
                    codes[b * 32 + 16 + j] = blk.qs[j] >> 4;
                }
            } else {
                block_q8_0 blk;
                memcpy(&blk, row + b * sizeof blk, sizeof blk);
                d = blk.d;
                for (int j = 0; j < 32; j++) codes[b * 32 + j] = (uint8_t)(blk.qs[j] + 128);
            }
            q.scales[b * rows + hr] = f16_to_f32(d);
            q.zeros[b * rows + hr] = is4 ? 8 : 128;
        }
    }
    int rc = qk_from_quant(&q, L);
    quant_layer_free(&q);
    return rc;
}

/* Weight (rows, cols) into l; heads > 0 un-permutes q/k rows. */
static int load_lin(const gguf_file *g, linear *l, const char *name, int64_t rows, int64_t cols, int heads, int flags) {
    memset(l, 0, sizeof *l);
    l->out = rows, l->in = cols;
    const gguf_tensor *t = need(g, name, cols, rows);
    if (!t) return -1;
    if (is_float_type(t->type) && heads == 0) {
        l->dtype = float_dtype(t->type);
        l->w = t->data;
        return 0;
    }
    if ((t->type == GGML_T_Q4_0 || t->type == GGML_T_Q8_0) && !(flags & LLAMA_LOAD_DEQUANTIZE)) {
        qk_layer L;
        if (blocks_to_qk(t, rows, cols, heads, &L)) return gptq_fail_context("%s: tensor '%s'", g->path, name);
        linear_set_qk(l, &L);
        return 0;
    }
    float *w = dequant(t, rows, cols);
    if (heads > 0) {
        float *u = xaligned_alloc(sizeof(float) * (size_t)(rows * cols));
        for (int64_t r = 0; r < rows; r++) memcpy(u + unpermuted_row(r, rows, heads) * cols, w + r * cols, sizeof(float) * (size_t)cols);
        free(w);
        w = u;
    }
    linear_set_f32(l, w);
    return 0;
}

static int read_config(const gguf_file *g, hf_config *c) {
    memset(c, 0, sizeof *c);
    const char *arch = NULL;
    if (gguf_get_str(g, "general.architecture", 1, &arch)) return -1;
    if (strcmp(arch, "llama") != 0) return gptq_fail("%s: architecture \"%s\" is not supported (only llama)", g->path, arch);
    snprintf(c->model_type, sizeof c->model_type, "llama");
    uint32_t u[8] = {0};
    if (gguf_get_u32(g, "llama.embedding_length", 1, &u[0]) || gguf_get_u32(g, "llama.feed_forward_length", 1, &u[1]) ||
        gguf_get_u32(g, "llama.block_count", 1, &u[2]) || gguf_get_u32(g, "llama.attention.head_count", 1, &u[3]))
        return -1;
    u[4] = u[3];
    u[6] = 2048;
    if (gguf_get_u32(g, "llama.attention.head_count_kv", 0, &u[4]) || gguf_get_u32(g, "llama.context_length", 0, &u[6]))
        return -1;
    c->dim = (int)u[0], c->hidden_dim = (int)u[1], c->n_layers = (int)u[2], c->n_heads = (int)u[3], c->n_kv_heads = (int)u[4];
    c->max_pos = (int)u[6];
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->max_pos <= 0 ||
        c->dim > (1 << 20) || c->hidden_dim > (1 << 22) || c->n_layers > 4096 || c->n_heads > 4096)
        return gptq_fail("%s: implausible llama hyper-parameters", g->path);
    if (c->n_heads % c->n_kv_heads) return gptq_fail("%s: %d heads is not a multiple of %d KV heads", g->path, c->n_heads, c->n_kv_heads);
    uint32_t hd = (uint32_t)(c->dim / c->n_heads), rd = 0;
    if (gguf_get_u32(g, "llama.attention.key_length", 0, &hd) || gguf_get_u32(g, "llama.rope.dimension_count", 0, &rd)) return -1;
    c->head_dim = (int)hd;
    if (c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > 4096) return gptq_fail("%s: bad head dimension %d", g->path, c->head_dim);
    if (rd && rd != hd) return gptq_fail("%s: partial rotary embeddings (%u of %u) are not supported", g->path, rd, hd);
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if (gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", 0, &c->norm_eps) ||
        gguf_get_f32(g, "llama.rope.freq_base", 0, &c->rope_theta))
        return -1;
    const char *scaling = NULL;
    if (gguf_get_str(g, "llama.rope.scaling.type", 0, &scaling)) return -1;
    c->rope_type = ROPE_DEFAULT;
    if (scaling && strcmp(scaling, "linear") == 0) {
        c->rope_type = ROPE_LINEAR;
        c->rope_factor = 1.0f;
        if (gguf_get_f32(g, "llama.rope.scaling.factor", 1, &c->rope_factor)) return -1;
        if (!(c->rope_factor > 0)) return gptq_fail("%s: bad llama.rope.scaling.factor", g->path);
    } else if (scaling && strcmp(scaling, "none") != 0) {
        return gptq_fail("%s: rope scaling \"%s\" is not supported", g->path, scaling);
    }
    const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return gptq_fail("%s: tensor 'token_embd.weight' is missing", g->path);
    if (emb->n_dims != 2 || emb->ne[1] > (1 << 24)) return gptq_fail("%s: tensor 'token_embd.weight' has an implausible shape", g->path);
    c->vocab_size = (int)emb->ne[1];
    const gguf_kv *toks = gguf_find(g, "tokenizer.ggml.tokens");
    if (toks && toks->type == GGUF_ARRAY && toks->n != (uint64_t)c->vocab_size)
        return gptq_fail("%s: %llu tokens in tokenizer.ggml.tokens but token_embd.weight has %d rows", g->path,
                         (unsigned long long)toks->n, c->vocab_size);
    c->tie_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    uint32_t bos = UINT32_MAX, eos = UINT32_MAX;
    if (gguf_get_u32(g, "tokenizer.ggml.bos_token_id", 0, &bos) || gguf_get_u32(g, "tokenizer.ggml.eos_token_id", 0, &eos)) return -1;
    c->bos_id = bos == UINT32_MAX ? -1 : (int)bos;
    if (eos != UINT32_MAX) c->eos_ids[c->n_eos++] = (int)eos;
    c->dtype = DT_F32;
    return 0;
}

int llama_load_gguf(llama_model *m, const char *path, int flags) {
    memset(m, 0, sizeof *m);
    m->load_flags = flags;
    gguf_file *g = xcalloc(1, sizeof *g);
    if (gguf_open(g, path)) {
        free(g);
        return -1;
    }
    m->gguf = g;
    m->dir = xstrdup(path);
    if (read_config(g, &m->cfg)) goto fail;
    const hf_config *c = &m->cfg;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;

    const gguf_tensor *emb = need(g, "token_embd.weight", c->dim, c->vocab_size);
    if (!emb) goto fail;
    if (is_float_type(emb->type)) {
        m->tok_embed = emb->data;
        m->embed_dtype = float_dtype(emb->type);
    } else {
        m->embed_owned = dequant(emb, c->vocab_size, c->dim);
        m->tok_embed = m->embed_owned;
        m->embed_dtype = DT_F32;
    }
    m->layers = xcalloc((size_t)c->n_layers, sizeof(llama_layer));
    static const char *const names[LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    for (int i = 0; i < c->n_layers; i++) {
        llama_layer *L = &m->layers[i];
        char p[96];
        snprintf(p, sizeof p, "blk.%d.attn_norm.weight", i);
        if (!(L->attn_norm = load_vec(g, p, c->dim))) goto fail;
        snprintf(p, sizeof p, "blk.%d.ffn_norm.weight", i);
        if (!(L->ffn_norm = load_vec(g, p, c->dim))) goto fail;
        const int64_t shapes[LIN_COUNT][2] = {{qd, c->dim},         {kvd, c->dim},         {kvd, c->dim},      {c->dim, qd},
                                              {c->hidden_dim, c->dim}, {c->hidden_dim, c->dim}, {c->dim, c->hidden_dim}};
        for (int j = 0; j < LIN_COUNT; j++) {
            snprintf(p, sizeof p, "blk.%d.%s.weight", i, names[j]);
            int heads = j == LIN_Q ? c->n_heads : j == LIN_K ? c->n_kv_heads : 0;
            if (load_lin(g, &L->lin[j], p, shapes[j][0], shapes[j][1], heads, flags)) goto fail;
        }
    }
    if (!(m->final_norm = load_vec(g, "output_norm.weight", c->dim))) goto fail;
    if (c->tie_embeddings) {
        m->lm_head = (linear){.out = c->vocab_size, .in = c->dim, .dtype = m->embed_dtype, .w = m->tok_embed};
    } else if (load_lin(g, &m->lm_head, "output.weight", c->vocab_size, c->dim, 0, flags)) {
        goto fail;
    }
    for (int i = 0; i < c->n_layers; i++)
        for (int j = 0; j < LIN_COUNT; j++) m->n_params += m->layers[i].lin[j].out * m->layers[i].lin[j].in;
    m->n_params += (int64_t)c->vocab_size * c->dim * (c->tie_embeddings ? 1 : 2) + (int64_t)c->dim * (2 * c->n_layers + 1);

    /* rotary frequencies, with llama.cpp's per-frequency factors if the file has them */
    int half = c->head_dim / 2;
    m->rope_inv_freq = xmalloc(sizeof(float) * (size_t)half);
    const gguf_tensor *rf = gguf_find_tensor(g, "rope_freqs.weight");
    float *factors = NULL;
    if (rf && !(factors = load_vec(g, "rope_freqs.weight", half))) goto fail;
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        if (c->rope_type == ROPE_LINEAR) f /= c->rope_factor;
        if (factors) f /= factors[i];
        m->rope_inv_freq[i] = f;
    }
    free(factors);
    return 0;
fail:
    llama_free(m);
    return -1;
}

void llama_gguf_release(llama_model *m) {
    free(m->embed_owned);
    m->embed_owned = NULL;
    if (m->gguf) {
        gguf_close(m->gguf);
        free(m->gguf);
        m->gguf = NULL;
    }
}
