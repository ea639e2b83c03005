#include "model/llama.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/error.h"
#include "core/fs.h"
#include "io/gguf.h"
#include "io/gptq_checkpoint.h"
#include "kernels/cpu/attn.h"

/* From this many query rows on, attention goes through sgemm (decode uses loops). */
#define ATT_GEMM_MIN 16

static const char *const linear_names[LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

const char *llama_linear_name(llama_linear_id id) { return linear_names[id]; }

/* ---------------- loading ---------------- */

static int is_float_dtype(gptq_dtype t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16; }

static const st_tensor *need(llama_model *m, const char *name, int ndim, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    const st_tensor *t = st_require(&m->st, name, ndim, shape);
    if (t && !is_float_dtype(t->dtype)) {
        gptq_fail("%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", m->st.paths[t->file_index], name,
                  dtype_name(t->dtype));
        return NULL;
    }
    return t;
}

/* A 1-D tensor converted to an owned fp32 array. */
static float *load_vector(llama_model *m, const char *name, int64_t n) {
    const st_tensor *t = need(m, name, 1, n, 0);
    if (!t) return NULL;
    float *v = xmalloc(sizeof(float) * n);
    convert_to_f32(v, t->data, t->dtype, (size_t)n);
    return v;
}

static int load_linear(llama_model *m, linear *l, const char *prefix, int64_t out, int64_t in, int has_bias) {
    char name[256];
    memset(l, 0, sizeof *l);
    l->out = out, l->in = in;
    /* A GPTQ checkpoint's quantized layers stay packed for the fused kernels, or are
     * dequantized to fp32 on load (LLAMA_LOAD_DEQUANTIZE, the reference path). */
    int q = 0;
    if (m->cfg.quant.present && (m->load_flags & LLAMA_LOAD_DEQUANTIZE)) {
        float *wq = NULL;
        q = gptq_ckpt_load_linear(&m->st, &m->cfg.quant, prefix, out, in, &wq);
        if (q == 1) linear_set_f32(l, wq);
    } else if (m->cfg.quant.present) {
        qk_layer qk;
        q = gptq_ckpt_load_qk(&m->st, &m->cfg.quant, prefix, out, in, &qk);
        if (q == 1) linear_set_qk(l, &qk);
    }
    if (q < 0) return -1;
    if (q == 0) {
        snprintf(name, sizeof name, "%s.weight", prefix);
        const st_tensor *t = need(m, name, 2, out, in);
        if (!t) return -1;
        l->dtype = t->dtype, l->w = t->data;
    }
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        if (!(l->bias = load_vector(m, name, out))) return -1;
    }
    return 0;
}

static void init_rope(llama_model *m) {
    const hf_config *c = &m->cfg;
    int half = c->head_dim / 2;
    m->rope_inv_freq = xmalloc(sizeof(float) * half);
    for (int i = 0; i < half; i++) {
        /* As transformers computes it: base ** (2i/d) in fp32. */
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        if (c->rope_type == ROPE_LINEAR) {
            f /= c->rope_factor;
        } else if (c->rope_type == ROPE_LLAMA3) {
            float low_wavelen = c->rope_original_max_pos / c->rope_low_freq_factor;
            float high_wavelen = c->rope_original_max_pos / c->rope_high_freq_factor;
            float wavelen = 2.0f * (float)M_PI / f;
            if (wavelen > low_wavelen) {
                f = f / c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                float smooth = (c->rope_original_max_pos / wavelen - c->rope_low_freq_factor) /
                               (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        m->rope_inv_freq[i] = f;
    }
}

int llama_load(llama_model *m, const char *dir) { return llama_load_ex(m, dir, 0); }

int llama_load_ex(llama_model *m, const char *dir, int flags) {
    memset(m, 0, sizeof *m);
    if (!fs_is_dir(dir) && gguf_is_gguf(dir)) return llama_load_gguf(m, dir, flags);
    m->load_flags = flags;
    if (!fs_is_dir(dir)) return gptq_fail("%s: not a model directory", dir);
    char *cfg_path = fs_join(dir, "config.json");
    int rc = hf_config_load(&m->cfg, cfg_path);
    free(cfg_path);
    if (rc != 0) return -1;
    char *qc_path = fs_join(dir, "quantize_config.json");
    if (!m->cfg.quant.present && fs_exists(qc_path)) rc = hf_quant_config_load(&m->cfg.quant, qc_path);
    free(qc_path);
    if (rc != 0 || st_open_dir(&m->st, dir) != 0) {
        hf_config_free(&m->cfg);
        return -1;
    }
    m->dir = xstrdup(dir);
    const hf_config *c = &m->cfg;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;

    const st_tensor *emb = need(m, "model.embed_tokens.weight", 2, c->vocab_size, c->dim);
    if (!emb) goto fail;
    m->tok_embed = emb->data;
    m->embed_dtype = emb->dtype;

    m->layers = xcalloc(c->n_layers, sizeof(llama_layer));
    for (int i = 0; i < c->n_layers; i++) {
        llama_layer *L = &m->layers[i];
        char p[256];
        snprintf(p, sizeof p, "model.layers.%d.input_layernorm.weight", i);
        if (!(L->attn_norm = load_vector(m, p, c->dim))) goto fail;
        snprintf(p, sizeof p, "model.layers.%d.post_attention_layernorm.weight", i);
        if (!(L->ffn_norm = load_vector(m, p, c->dim))) goto fail;
        const int64_t shapes[LIN_COUNT][2] = {{qd, c->dim}, {kvd, c->dim}, {kvd, c->dim},          {c->dim, qd},
                                              {c->hidden_dim, c->dim}, {c->hidden_dim, c->dim}, {c->dim, c->hidden_dim}};
        for (int j = 0; j < LIN_COUNT; j++) {
            int bias = (j <= LIN_V && c->qkv_bias) || (j == LIN_O && c->o_bias) || (j >= LIN_GATE && c->mlp_bias);
            snprintf(p, sizeof p, "model.layers.%d.%s", i, linear_names[j]);
            if (load_linear(m, &L->lin[j], p, shapes[j][0], shapes[j][1], bias) != 0) goto fail;
        }
    }
    if (!(m->final_norm = load_vector(m, "model.norm.weight", c->dim))) goto fail;
    if (c->tie_embeddings) {
        m->lm_head = (linear){.out = c->vocab_size, .in = c->dim, .dtype = m->embed_dtype, .w = m->tok_embed};
    } else if (load_linear(m, &m->lm_head, "lm_head", c->vocab_size, c->dim, 0) != 0) {
        goto fail;
    }
    for (int i = 0; i < c->n_layers; i++)
        for (int j = 0; j < LIN_COUNT; j++) {
            const linear *l = &m->layers[i].lin[j];
            m->n_params += l->out * l->in + (l->bias ? l->out : 0);
        }
    m->n_params += (int64_t)c->vocab_size * c->dim * (c->tie_embeddings ? 1 : 2) + (int64_t)c->dim * (2 * c->n_layers + 1);
    init_rope(m);
    return 0;
fail:
    llama_free(m);
    return -1;
}

int64_t llama_weight_bytes(const llama_model *m) {
    int64_t b = linear_weight_bytes(&m->lm_head);
    for (int i = 0; i < m->cfg.n_layers; i++)
        for (int j = 0; j < LIN_COUNT; j++) b += linear_weight_bytes(&m->layers[i].lin[j]);
    return b;
}

void llama_free(llama_model *m) {
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layers; i++) {
            free(m->layers[i].attn_norm);
            free(m->layers[i].ffn_norm);
            for (int j = 0; j < LIN_COUNT; j++) linear_free(&m->layers[i].lin[j]);
        }
    }
    free(m->layers);
    free(m->final_norm);
    if (!m->cfg.tie_embeddings) linear_free(&m->lm_head);
    free(m->rope_inv_freq);
    free(m->dir);
    llama_gguf_release(m);
    st_close(&m->st);
    hf_config_free(&m->cfg);
    memset(m, 0, sizeof *m);
}

/* ---------------- state ---------------- */

llama_state *llama_state_new(const llama_model *m, int max_seq, int max_batch) {
    return llama_state_new_ex(m, max_seq, max_batch, m->cfg.n_layers);
}

llama_state *llama_state_new_ex(const llama_model *m, int max_seq, int max_batch, int cache_layers) {
    const hf_config *c = &m->cfg;
    llama_state *s = xcalloc(1, sizeof *s);
    s->cache_layers = cache_layers;
    s->max_seq = max_seq;
    s->max_batch = max_batch;
    s->n_threads = omp_get_max_threads();
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = (size_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim);
    if (wide < qd) wide = qd;
    size_t B = (size_t)max_batch;
    s->k_cache = xaligned_alloc(sizeof(float) * cache_layers * max_seq * kvd);
    s->v_cache = xaligned_alloc(sizeof(float) * cache_layers * max_seq * kvd);
    s->x = xaligned_alloc(sizeof(float) * B * c->dim);
    s->xn = xaligned_alloc(sizeof(float) * B * wide);
    s->q = xaligned_alloc(sizeof(float) * B * qd);
    s->kv = xaligned_alloc(sizeof(float) * B * 2 * kvd);
    s->att_out = xaligned_alloc(sizeof(float) * B * qd);
    s->hb = xaligned_alloc(sizeof(float) * B * c->hidden_dim);
    s->hb2 = xaligned_alloc(sizeof(float) * B * c->hidden_dim);
    s->out = xaligned_alloc(sizeof(float) * B * wide);
    s->scores = xaligned_alloc(sizeof(float) * (s->n_threads > max_batch ? s->n_threads : max_batch) * max_seq);
    s->cos = xaligned_alloc(sizeof(float) * B * (c->head_dim / 2));
    s->sin = xaligned_alloc(sizeof(float) * B * (c->head_dim / 2));
    s->logits = xaligned_alloc(sizeof(float) * B * c->vocab_size);
    return s;
}

void llama_state_free(llama_state *s) {
    if (!s) return;
    free(s->k_cache), free(s->v_cache), free(s->x), free(s->xn), free(s->q), free(s->kv), free(s->att_out);
    free(s->hb), free(s->hb2), free(s->out), free(s->scores), free(s->cos), free(s->sin), free(s->logits);
    free(s);
}

/* ---------------- forward ---------------- */

void llama_embed(const llama_model *m, const int *ids, int n, float *x) {
    int dim = m->cfg.dim;
    size_t row = (size_t)dim * dtype_size(m->embed_dtype);
    for (int t = 0; t < n; t++) convert_to_f32(x + (size_t)t * dim, (const char *)m->tok_embed + ids[t] * row, m->embed_dtype, dim);
}

/* out = x / sqrt(mean(x²) + eps) * w, row by row (n rows of dim). */
void llama_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps) {
#pragma omp parallel for schedule(static) if (n > 8)
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * dim;
        float *ot = out + (size_t)t * dim;
        float ss = 0;
        for (int i = 0; i < dim; i++) ss += xt[i] * xt[i];
        float inv = 1.0f / sqrtf(ss / dim + eps);
        for (int i = 0; i < dim; i++) ot[i] = w[i] * (xt[i] * inv);
    }
}

/* Rotates pairs (i, i + half) of each head: transformers' rotate_half convention. */
static void rope(float *v, int n, int n_heads, int head_dim, const float *cos_t, const float *sin_t) {
    int half = head_dim / 2;
    for (int t = 0; t < n; t++) {
        const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
        for (int h = 0; h < n_heads; h++) {
            float *x = v + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float a = x[i], b = x[i + half];
                x[i] = a * c[i] - b * s[i];
                x[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

static void notify(llama_state *s, int layer, llama_linear_id id, const float *x, int n, int64_t in) {
    if (s->observer) s->observer(s->observer_ctx, layer, id, x, n, in);
}

static void rope_tables(const llama_model *m, llama_state *s, int n, int pos0) {
    int half = m->cfg.head_dim / 2;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            float a = (float)(pos0 + t) * m->rope_inv_freq[i];
            s->cos[t * half + i] = cosf(a);
            s->sin[t * half + i] = sinf(a);
        }
}

/* Causal attention of n queries (s->q, positions pos0..) over cached keys/values kc/vc
 * (positions 0..pos0+n-1) into out (n, n_heads*head_dim). */
static void attention(const llama_model *m, llama_state *s, const float *kc, const float *vc, int n, int pos0, float *out,
                      size_t seq_stride) {
    const hf_config *c = &m->cfg;
    int hd = c->head_dim, nh = c->n_heads, group = c->n_heads / c->n_kv_heads;
    size_t kvd = (size_t)c->n_kv_heads * hd, qd = (size_t)nh * hd;
    float scale = 1.0f / sqrtf((float)hd);
    if (!seq_stride && n >= ATT_GEMM_MIN) {
        /* Prefill: per head, scores = Q·Kᵀ and out = P·V through (multi-threaded) sgemm,
         * each row's causal part softmaxed in parallel and the rest zeroed. */
        int len = pos0 + n;
        float *sc = s->scores;
        for (int h = 0; h < nh; h++) {
            int kvh = h / group;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, len, hd, scale, s->q + (size_t)h * hd, (int)qd,
                        kc + (size_t)kvh * hd, (int)kvd, 0.0f, sc, len);
#pragma omp parallel for schedule(static)
            for (int r = 0; r < n; r++) {
                float *row = sc + (size_t)r * len;
                int valid = pos0 + r + 1;
                float mx = -INFINITY, sum = 0;
                for (int p = 0; p < valid; p++) mx = row[p] > mx ? row[p] : mx;
                for (int p = 0; p < valid; p++) sum += row[p] = expf(row[p] - mx);
                float inv = 1.0f / sum;
                for (int p = 0; p < valid; p++) row[p] *= inv;
                for (int p = valid; p < len; p++) row[p] = 0;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, len, 1.0f, sc, len, vc + (size_t)kvh * hd, (int)kvd,
                        0.0f, out + (size_t)h * hd, (int)qd);
        }
        return;
    }
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < nh; h++) {
            float *sc = s->scores + (size_t)omp_get_thread_num() * s->max_seq;
            const float *qv = s->q + t * qd + (size_t)h * hd;
            /* lock-step rows are separate sequences, each at position pos0 with its own cache */
            int kvh = h / group, len = seq_stride ? pos0 + 1 : pos0 + t + 1;
            const float *kct = kc + t * seq_stride, *vct = vc + t * seq_stride;
            attn_decode_head(out + t * qd + (size_t)h * hd, qv, kct + (size_t)kvh * hd, vct + (size_t)kvh * hd, kvd, len, hd,
                             scale, sc);
        }
    }
}

/* KV cache rows of `layer` (a state with one cache layer shares it between all layers). */
static float *cache_k(llama_state *s, int layer, size_t kvd) {
    return s->k_cache + (size_t)(s->cache_layers == 1 ? 0 : layer) * s->max_seq * kvd;
}
static float *cache_v(llama_state *s, int layer, size_t kvd) {
    return s->v_cache + (size_t)(s->cache_layers == 1 ? 0 : layer) * s->max_seq * kvd;
}

void llama_attention(const llama_model *m, llama_state *s, int layer, const float *xn, int n, int pos0, float *att_out) {
    const hf_config *c = &m->cfg;
    const llama_layer *L = &m->layers[layer];
    int hd = c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * hd;
    rope_tables(m, s, n, pos0);
    float *kn = s->kv, *vn = s->kv + (size_t)n * kvd;
    const linear *qkv[3] = {&L->lin[LIN_Q], &L->lin[LIN_K], &L->lin[LIN_V]};
    float *const qkv_out[3] = {s->q, kn, vn};
    linear_forward_multi(qkv, qkv_out, 3, xn, n);
    rope(s->q, n, c->n_heads, hd, s->cos, s->sin);
    rope(kn, n, c->n_kv_heads, hd, s->cos, s->sin);
    float *kc = cache_k(s, layer, kvd), *vc = cache_v(s, layer, kvd);
    size_t stride = 0;
    if (s->lockstep) {
        stride = (size_t)m->cfg.n_layers * s->max_seq * kvd;
        for (int t = 0; t < n; t++) {
            memcpy(kc + t * stride + (size_t)pos0 * kvd, kn + t * kvd, sizeof(float) * kvd);
            memcpy(vc + t * stride + (size_t)pos0 * kvd, vn + t * kvd, sizeof(float) * kvd);
        }
    } else {
        memcpy(kc + (size_t)pos0 * kvd, kn, sizeof(float) * n * kvd);
        memcpy(vc + (size_t)pos0 * kvd, vn, sizeof(float) * n * kvd);
    }
    attention(m, s, kc, vc, n, pos0, att_out, stride);
}

void llama_mlp_act(const llama_model *m, llama_state *s, int layer, const float *xn, int n, float *act) {
    const llama_layer *L = &m->layers[layer];
    size_t hid = (size_t)m->cfg.hidden_dim;
    const linear *gate_up[2] = {&L->lin[LIN_GATE], &L->lin[LIN_UP]};
    float *const gate_up_out[2] = {act, s->hb2};
    linear_forward_multi(gate_up, gate_up_out, 2, xn, n);
    for (size_t i = 0; i < (size_t)n * hid; i++) {
        float g = act[i];
        act[i] = g / (1.0f + expf(-g)) * s->hb2[i];
    }
}

void llama_block_forward(const llama_model *m, llama_state *s, int layer, float *x, int n, int pos0) {
    const hf_config *c = &m->cfg;
    const llama_layer *L = &m->layers[layer];
    int dim = c->dim;
    size_t qd = (size_t)c->n_heads * c->head_dim;

    /* attention: x += o(attn(norm(x))) */
    llama_rmsnorm(s->xn, x, L->attn_norm, n, dim, c->norm_eps);
    notify(s, layer, LIN_Q, s->xn, n, dim);
    llama_attention(m, s, layer, s->xn, n, pos0, s->att_out);
    notify(s, layer, LIN_O, s->att_out, n, (int64_t)qd);
    linear_forward(&L->lin[LIN_O], s->out, s->att_out, n);
    for (size_t i = 0; i < (size_t)n * dim; i++) x[i] += s->out[i];

    /* MLP: x += down(silu(gate(norm(x))) * up(norm(x))) */
    llama_rmsnorm(s->xn, x, L->ffn_norm, n, dim, c->norm_eps);
    notify(s, layer, LIN_GATE, s->xn, n, dim);
    llama_mlp_act(m, s, layer, s->xn, n, s->hb);
    notify(s, layer, LIN_DOWN, s->hb, n, c->hidden_dim);
    linear_forward(&L->lin[LIN_DOWN], s->out, s->hb, n);
    for (size_t i = 0; i < (size_t)n * dim; i++) x[i] += s->out[i];
}

void llama_forward_hidden(const llama_model *m, llama_state *s, const int *ids, int n, int pos0) {
    llama_embed(m, ids, n, s->x);
    for (int l = 0; l < m->cfg.n_layers; l++) llama_block_forward(m, s, l, s->x, n, pos0);
    llama_rmsnorm(s->x, s->x, m->final_norm, n, m->cfg.dim, m->cfg.norm_eps);
}

void llama_logits(const llama_model *m, const float *hidden, int n, float *out) { linear_forward(&m->lm_head, out, hidden, n); }

const float *llama_forward_lockstep(const llama_model *m, llama_state *s, const int *ids, int n, int pos) {
    s->lockstep = 1;
    const float *lg = llama_forward(m, s, ids, n, pos, 1);
    s->lockstep = 0;
    return lg;
}

const float *llama_forward(const llama_model *m, llama_state *s, const int *ids, int n, int pos0, int all_logits) {
    llama_forward_hidden(m, s, ids, n, pos0);
    if (all_logits) llama_logits(m, s->x, n, s->logits);
    else llama_logits(m, s->x + (size_t)(n - 1) * m->cfg.dim, 1, s->logits);
    return s->logits;
}
