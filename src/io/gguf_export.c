/* HF checkpoint directory -> GGUF (see gguf_export.h). */
#include "io/gguf_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "io/gguf.h"
#include "io/gguf_vocab.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "quant/ggml_quants.h"

ggml_type gguf_fallback_type(ggml_type want, int64_t ne0) {
    const ggml_type_traits *tr = ggml_traits(want);
    if (ne0 % tr->block_size == 0) return want;
    ggml_type t = want;
    switch (want) {
    case GGML_T_Q2_K:
    case GGML_T_Q3_K: t = GGML_T_Q4_0; break;
    case GGML_T_Q4_K: t = GGML_T_Q5_0; break;
    case GGML_T_Q5_K: t = GGML_T_Q5_1; break;
    case GGML_T_Q6_K: t = GGML_T_Q8_0; break;
    default: break;
    }
    if (ne0 % ggml_traits(t)->block_size) t = GGML_T_F16;
    return t;
}

int gguf_tensor_name(const char *hf, char *out, size_t n) {
    static const char *const map[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"},      {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},         {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},    {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},          {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    if (strcmp(hf, "model.embed_tokens.weight") == 0) return snprintf(out, n, "token_embd.weight"), 0;
    if (strcmp(hf, "lm_head.weight") == 0) return snprintf(out, n, "output.weight"), 0;
    if (strcmp(hf, "model.norm.weight") == 0) return snprintf(out, n, "output_norm.weight"), 0;
    int layer, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
            if (strcmp(hf + used, map[k][0]) == 0) return snprintf(out, n, "blk.%d.%s", layer, map[k][1]), 0;
    return -1;
}

int gguf_type_for(const gguf_file *types_from, const char *hf_name, ggml_type dflt) {
    if (!types_from) return (int)dflt;
    char gn[128];
    if (gguf_tensor_name(hf_name, gn, sizeof gn)) return gptq_fail("no GGUF name for tensor '%s'", hf_name);
    const gguf_tensor *t = gguf_find_tensor(types_from, gn);
    if (!t) return gptq_fail("%s: has no tensor '%s' to take its type from", types_from->path, gn);
    if (!ggml_quant_supported(t->type))
        return gptq_fail("%s: tensor '%s' has type %s, which we cannot write", types_from->path, gn, ggml_traits(t->type)->name);
    return (int)t->type;
}

/* llama_ftype of a file whose weights are all of type t (general.file_type). */
static uint32_t file_type_of(ggml_type t) {
    switch (t) {
    case GGML_T_F32: return 0;
    case GGML_T_F16: return 1;
    case GGML_T_Q4_0: return 2;
    case GGML_T_Q4_1: return 3;
    case GGML_T_Q8_0: return 7;
    case GGML_T_Q5_0: return 8;
    case GGML_T_Q5_1: return 9;
    case GGML_T_Q2_K: return 10;
    case GGML_T_Q3_K: return 11; /* Q3_K_S: every weight q3_k */
    case GGML_T_Q4_K: return 14; /* Q4_K_S */
    case GGML_T_Q5_K: return 16; /* Q5_K_S */
    case GGML_T_Q6_K: return 18;
    case GGML_T_BF16: return 32;
    }
    return 0;
}

/* One tensor to write: a float source (converted, permuted, quantized on the fly) or
 * provided bytes (permuted). */
typedef struct {
    const st_tensor *src;  /* float source, or NULL */
    const void *bytes;     /* provided rows (HF order), or NULL */
    ggml_type type;
    int64_t rows, cols;
    int perm_heads;        /* > 0: q/k row permutation with this many heads */
    const float *vec;      /* small f32 vector owned by the exporter (rope factors), or NULL */
} w_src;

/* GGUF row r comes from HF row hf_row(r). */
static int64_t hf_row(int64_t r, int64_t rows, int heads) {
    if (heads <= 0) return r;
    int64_t d = rows / heads, half = d / 2, h = r / d, k = r % d;
    return h * d + (k % 2) * half + k / 2;
}

static int fill_tensor(void *ctx, void *dst, size_t nbytes) {
    const w_src *s = ctx;
    if (s->vec) {
        memcpy(dst, s->vec, nbytes);
        return 0;
    }
    const size_t rb = ggml_row_size(s->type, s->cols);
    if (rb * (size_t)s->rows != nbytes) return gptq_fail("internal: tensor size mismatch");
    if (s->bytes) {
        for (int64_t r = 0; r < s->rows; r++)
            memcpy((char *)dst + r * rb, (const char *)s->bytes + hf_row(r, s->rows, s->perm_heads) * rb, rb);
        return 0;
    }
    /* float source: chunks of rows through an fp32 buffer */
    const int64_t chunk = 64;
    float *buf = xmalloc(sizeof(float) * (size_t)(chunk * s->cols));
    const size_t esz = dtype_size(s->src->dtype);
    for (int64_t r0 = 0; r0 < s->rows; r0 += chunk) {
        int64_t nr = s->rows - r0 < chunk ? s->rows - r0 : chunk;
        for (int64_t k = 0; k < nr; k++)
            convert_to_f32(buf + k * s->cols, (const char *)s->src->data + hf_row(r0 + k, s->rows, s->perm_heads) * s->cols * esz,
                           s->src->dtype, (size_t)s->cols);
        ggml_quantize_rows(s->type, buf, nr, s->cols, (char *)dst + r0 * rb);
    }
    free(buf);
    return 0;
}

typedef struct {
    gguf_writer *w;
    st_archive *st;
    const gguf_export_opts *o;
    w_src *srcs;
    int n_srcs;
    int fell_back;
} exporter;

static int add_tensor(exporter *x, const char *hf_name, const char *gguf_name, int64_t rows, int64_t cols, int is_matrix,
                      int perm_heads) {
    const st_tensor *t = st_find(x->st, hf_name);
    if (!t) return gptq_fail("%s: tensor '%s' is missing", x->st->paths[0], hf_name);
    if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16)
        return gptq_fail("%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", x->st->paths[t->file_index], hf_name,
                         dtype_name(t->dtype));
    if (t->numel != rows * cols)
        return gptq_fail("%s: tensor '%s' has %lld elements; expected %lld", x->st->paths[t->file_index], hf_name,
                         (long long)t->numel, (long long)(rows * cols));
    w_src *s = &x->srcs[x->n_srcs++];
    memset(s, 0, sizeof *s);
    s->src = t;
    s->rows = rows, s->cols = cols;
    s->perm_heads = perm_heads;
    s->type = GGML_T_F32;
    if (is_matrix) {
        ggml_type pt;
        const void *bytes;
        if (x->o->provide && x->o->provide(x->o->ctx, hf_name, &pt, &bytes)) {
            s->type = pt;
            s->bytes = bytes;
        } else {
            int want = gguf_type_for(x->o->types_from, hf_name, x->o->type);
            if (want < 0) return -1;
            s->type = gguf_fallback_type((ggml_type)want, cols);
            if (s->type != (ggml_type)want) {
                gptq_warn("%s: row length %lld is not a multiple of %s's block of %d; written as %s", gguf_name,
                          (long long)cols, ggml_traits((uint32_t)want)->name, ggml_traits((uint32_t)want)->block_size,
                          ggml_traits(s->type)->name);
                x->fell_back++;
            }
        }
    }
    int64_t ne[2] = {cols, rows};
    gguf_w_tensor(x->w, gguf_name, s->type, is_matrix ? 2 : 1, ne, NULL, fill_tensor, s);
    return 0;
}

static const char *base_name(const char *dir) {
    const char *e = dir + strlen(dir);
    while (e > dir && e[-1] == '/') e--;
    const char *b = e;
    while (b > dir && b[-1] != '/') b--;
    static char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(e - b), b);
    return buf;
}

int gguf_export_model(const char *dir, const char *out, const gguf_export_opts *o) {
    if (!ggml_quant_supported(o->type)) return gptq_fail("GGUF export: type %d is not supported", (int)o->type);
    hf_config c;
    char *cfg_path = fs_join(dir, "config.json");
    int rc = hf_config_load(&c, cfg_path);
    free(cfg_path);
    if (rc) return -1;
    if (c.quant.present) {
        hf_config_free(&c);
        return gptq_fail("%s: a GPTQ checkpoint cannot be exported to GGUF (give the original model)", dir);
    }
    if (strcmp(c.model_type, "llama") != 0 && strcmp(c.model_type, "mistral") != 0) {
        hf_config_free(&c);
        return gptq_fail("%s: GGUF export supports llama and mistral models, not %s", dir, c.model_type);
    }
    if (c.qkv_bias || c.o_bias || c.mlp_bias) {
        hf_config_free(&c);
        return gptq_fail("%s: GGUF export of models with biases is not supported", dir);
    }
    st_archive st;
    if (st_open_dir(&st, dir)) {
        hf_config_free(&c);
        return -1;
    }
    gguf_writer *w = gguf_writer_new();
    exporter x = {w, &st, o, xcalloc((size_t)c.n_layers * 9 + 8, sizeof(w_src)), 0, 0};
    float *rope_factors = NULL;

    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_str(w, "general.name", o->name ? o->name : base_name(dir));
    gguf_w_u32(w, "general.file_type", file_type_of(o->type));
    if (o->type != GGML_T_F32 && o->type != GGML_T_F16 && o->type != GGML_T_BF16) gguf_w_u32(w, "general.quantization_version", 2);
    gguf_w_u32(w, "llama.context_length", (uint32_t)c.max_pos);
    gguf_w_u32(w, "llama.embedding_length", (uint32_t)c.dim);
    gguf_w_u32(w, "llama.block_count", (uint32_t)c.n_layers);
    gguf_w_u32(w, "llama.feed_forward_length", (uint32_t)c.hidden_dim);
    gguf_w_u32(w, "llama.rope.dimension_count", (uint32_t)c.head_dim);
    gguf_w_u32(w, "llama.attention.head_count", (uint32_t)c.n_heads);
    gguf_w_u32(w, "llama.attention.head_count_kv", (uint32_t)c.n_kv_heads);
    gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", c.norm_eps);
    gguf_w_f32(w, "llama.rope.freq_base", c.rope_theta);
    if (c.head_dim * c.n_heads != c.dim) {
        gguf_w_u32(w, "llama.attention.key_length", (uint32_t)c.head_dim);
        gguf_w_u32(w, "llama.attention.value_length", (uint32_t)c.head_dim);
    }
    if (c.rope_type == ROPE_LINEAR) {
        gguf_w_str(w, "llama.rope.scaling.type", "linear");
        gguf_w_f32(w, "llama.rope.scaling.factor", c.rope_factor);
    }
    gguf_w_u32(w, "llama.vocab_size", (uint32_t)c.vocab_size);
    if (gguf_vocab_write(w, dir, &c)) goto fail;

    int64_t qd = (int64_t)c.n_heads * c.head_dim, kvd = (int64_t)c.n_kv_heads * c.head_dim;
    if (add_tensor(&x, "model.embed_tokens.weight", "token_embd.weight", c.vocab_size, c.dim, 1, 0)) goto fail;
    if (c.rope_type == ROPE_LLAMA3) {
        /* llama.cpp divides each rotary frequency by its factor: factor = f / f_scaled */
        int half = c.head_dim / 2;
        rope_factors = xmalloc(sizeof(float) * (size_t)half);
        float low_wl = c.rope_original_max_pos / c.rope_low_freq_factor, high_wl = c.rope_original_max_pos / c.rope_high_freq_factor;
        for (int i = 0; i < half; i++) {
            float f = 1.0f / powf(c.rope_theta, (float)(2 * i) / (float)c.head_dim), wl = 2.0f * (float)M_PI / f;
            if (wl < high_wl) rope_factors[i] = 1.0f;
            else if (wl > low_wl) rope_factors[i] = c.rope_factor;
            else {
                float smooth = (c.rope_original_max_pos / wl - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
                rope_factors[i] = 1.0f / ((1 - smooth) / c.rope_factor + smooth);
            }
        }
        w_src *s = &x.srcs[x.n_srcs++];
        memset(s, 0, sizeof *s);
        s->vec = rope_factors;
        s->type = GGML_T_F32;
        int64_t ne[1] = {half};
        gguf_w_tensor(w, "rope_freqs.weight", GGML_T_F32, 1, ne, NULL, fill_tensor, s);
    }
    for (int l = 0; l < c.n_layers; l++) {
        char hf[160], gg[96];
        struct {
            const char *hf, *gg;
            int64_t rows, cols;
            int matrix, perm;
        } spec[9] = {
            {"input_layernorm.weight", "attn_norm.weight", 1, c.dim, 0, 0},
            {"self_attn.q_proj.weight", "attn_q.weight", qd, c.dim, 1, c.n_heads},
            {"self_attn.k_proj.weight", "attn_k.weight", kvd, c.dim, 1, c.n_kv_heads},
            {"self_attn.v_proj.weight", "attn_v.weight", kvd, c.dim, 1, 0},
            {"self_attn.o_proj.weight", "attn_output.weight", c.dim, qd, 1, 0},
            {"post_attention_layernorm.weight", "ffn_norm.weight", 1, c.dim, 0, 0},
            {"mlp.gate_proj.weight", "ffn_gate.weight", c.hidden_dim, c.dim, 1, 0},
            {"mlp.up_proj.weight", "ffn_up.weight", c.hidden_dim, c.dim, 1, 0},
            {"mlp.down_proj.weight", "ffn_down.weight", c.dim, c.hidden_dim, 1, 0},
        };
        for (int k = 0; k < 9; k++) {
            snprintf(hf, sizeof hf, "model.layers.%d.%s", l, spec[k].hf);
            snprintf(gg, sizeof gg, "blk.%d.%s", l, spec[k].gg);
            if (add_tensor(&x, hf, gg, spec[k].rows, spec[k].cols, spec[k].matrix, spec[k].perm)) goto fail;
        }
    }
    if (add_tensor(&x, "model.norm.weight", "output_norm.weight", 1, c.dim, 0, 0)) goto fail;
    if (!c.tie_embeddings && add_tensor(&x, "lm_head.weight", "output.weight", c.vocab_size, c.dim, 1, 0)) goto fail;
    if (gguf_writer_write(w, out)) goto fail;
    free(rope_factors);
    free(x.srcs);
    gguf_writer_free(w);
    st_close(&st);
    hf_config_free(&c);
    return 0;
fail:
    free(rope_factors);
    free(x.srcs);
    gguf_writer_free(w);
    st_close(&st);
    hf_config_free(&c);
    return -1;
}
