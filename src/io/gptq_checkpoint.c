#include "io/gptq_checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "kernels/cpu/qmatmul.h"

/* ---------------- reading ---------------- */

static const st_tensor *need_tensor(const st_archive *st, const char *prefix, const char *suffix, gptq_dtype dt,
                                    int64_t d0, int64_t d1, int ndim) {
    char name[320];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    int64_t shape[2] = {d0, d1};
    const st_tensor *t = st_require(st, name, ndim, shape);
    if (t && t->dtype != dt) {
        gptq_fail("%s: tensor '%s' has dtype %s; expected %s", st->paths[t->file_index], name, dtype_name(t->dtype),
                  dtype_name(dt));
        return NULL;
    }
    return t;
}

/* The checkpoint tensors of one quantized Linear, checked against each other, the layer
 * shape and the module's settings (config.json top level + "dynamic" rules). */
typedef struct {
    const char *file;
    int bits, group_size, zero_v2;
    int64_t groups;
    const st_tensor *tq;    /* qweight int32 (in·bits/32, out) */
    const st_tensor *tz;    /* qzeros int32 (groups, out·bits/32) */
    const st_tensor *ts;    /* scales fp16 (groups, out) */
    int32_t *g_idx;         /* (in) owned; i / group_size when the checkpoint has none */
} ckpt_linear;

/* 1 and c filled if <prefix>.qweight exists, 0 if not, -1 with an error naming the file. */
static int find_linear(const st_archive *st, const hf_quant_config *qc, const char *prefix, int64_t out, int64_t in,
                       ckpt_linear *c) {
    char name[320];
    memset(c, 0, sizeof *c);
    snprintf(name, sizeof name, "%s.qweight", prefix);
    const st_tensor *tq = st_find(st, name);
    if (!tq) return 0;
    c->file = st->paths[tq->file_index];
    hf_quant_module ms;
    if (!hf_quant_module_settings(qc, prefix, &ms))
        return gptq_fail("%s: '%s' has a qweight but quantization_config.dynamic keeps it in float", c->file, prefix);
    c->bits = ms.bits, c->group_size = ms.group_size, c->zero_v2 = qc->format_v2;
    if (gptq_pack_check(out, in, c->bits) != 0) return gptq_fail("%s: %s: %s", c->file, prefix, gptq_last_error());
    if (tq->ndim == 2 && tq->shape[1] == out && tq->shape[0] != in * c->bits / 32)
        return gptq_fail("%s: '%s.qweight' has %lld rows but %d-bit weights over %lld inputs need %lld (bits in the config "
                         "do not match the tensor)",
                         c->file, prefix, (long long)tq->shape[0], c->bits, (long long)in, (long long)(in * c->bits / 32));
    snprintf(name, sizeof name, "%s.scales", prefix);
    const st_tensor *ts = st_find(st, name);
    if (!ts || ts->ndim != 2 || ts->shape[0] < 1)
        return gptq_fail("%s: quantized layer '%s' lacks a 2-D scales tensor", c->file, prefix);
    c->groups = ts->shape[0];
    int64_t want_groups = c->group_size > 0 ? (in + c->group_size - 1) / c->group_size : 1;
    if (c->groups != want_groups)
        return gptq_fail("%s: '%s.scales' has %lld groups but group_size %d over %lld inputs needs %lld", c->file, prefix,
                         (long long)c->groups, c->group_size, (long long)in, (long long)want_groups);
    if (!(c->tq = need_tensor(st, prefix, "qweight", DT_I32, in * c->bits / 32, out, 2)) ||
        !(c->ts = need_tensor(st, prefix, "scales", DT_F16, c->groups, out, 2)) ||
        !(c->tz = need_tensor(st, prefix, "qzeros", DT_I32, c->groups, out * c->bits / 32, 2)))
        return -1;
    snprintf(name, sizeof name, "%s.g_idx", prefix);
    c->g_idx = xmalloc(sizeof(int32_t) * in);
    if (st_find(st, name)) {
        const st_tensor *tg = need_tensor(st, prefix, "g_idx", DT_I32, in, 0, 1);
        if (!tg) goto fail;
        memcpy(c->g_idx, tg->data, sizeof(int32_t) * in);
    } else {
        for (int64_t i = 0; i < in; i++) c->g_idx[i] = (int32_t)(c->group_size > 0 ? i / c->group_size : 0);
    }
    for (int64_t i = 0; i < in; i++)
        if (c->g_idx[i] < 0 || c->g_idx[i] >= c->groups) {
            gptq_fail("%s: '%s.g_idx'[%lld] = %d is outside 0..%lld", c->file, prefix, (long long)i, c->g_idx[i],
                      (long long)c->groups - 1);
            goto fail;
        }
    return 1;
fail:
    free(c->g_idx);
    c->g_idx = NULL;
    return -1;
}

int gptq_ckpt_load_linear(const st_archive *st, const hf_quant_config *qc, const char *prefix, int64_t out, int64_t in,
                          float **w) {
    ckpt_linear c;
    int rc = find_linear(st, qc, prefix, out, in, &c);
    if (rc != 1) return rc;
    const int bits = c.bits;
    const int64_t groups = c.groups;
    uint8_t *codes = xmalloc((size_t)out * in);
    int32_t *zeros = xmalloc(sizeof(int32_t) * groups * out);
    gptq_unpack_qweight(c.tq->data, out, in, bits, codes);
    gptq_unpack_qzeros(c.tz->data, groups, out, bits, zeros); /* stored + 1 */
    int zero_shift = c.zero_v2 ? 1 : 0;                      /* v2 stores the zero point itself */
    const uint16_t *sc = c.ts->data;
    const int32_t *g_idx = c.g_idx;
    float *wf = xaligned_alloc(sizeof(float) * out * in);
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            int64_t g = g_idx[i];
            float s = f16_to_f32(sc[g * out + o]);
            wf[o * in + i] = s * (float)((int32_t)codes[o * in + i] - (zeros[g * out + o] - zero_shift));
        }
    free(codes), free(zeros), free(c.g_idx);
    *w = wf;
    return 1;
}

int gptq_ckpt_load_qk(const st_archive *st, const hf_quant_config *qc, const char *prefix, int64_t out, int64_t in,
                      qk_layer *L) {
    ckpt_linear c;
    int rc = find_linear(st, qc, prefix, out, in, &c);
    if (rc != 1) return rc;
    rc = qk_from_gptq(c.tq->data, c.tz->data, c.ts->data, c.g_idx, out, in, c.groups, c.bits, c.group_size, c.zero_v2,
                      L);
    free(c.g_idx);
    if (rc != 0) return gptq_fail("%s: '%s': %s", c.file, prefix, gptq_last_error());
    /* The repacked copy is all the kernels read: drop the mapped pages of the source. */
    st_release(st, c.tq->data, c.tq->nbytes);
    st_release(st, c.tz->data, c.tz->nbytes);
    st_release(st, c.ts->data, c.ts->nbytes);
    return 1;
}

/* ---------------- writing ---------------- */

static const char *const tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "tokenizer.model", "chat_template.jinja", "chat_template.json", NULL,
};

/* PCRE2 escaping of a module name for a "dynamic" skip pattern. */
static void regex_escape(char *dst, size_t n, const char *s) {
    size_t k = 0;
    if (k + 1 < n) dst[k++] = '^';
    for (; *s && k + 3 < n; s++) {
        if (strchr(".^$|()[]{}*+?\\", *s)) dst[k++] = '\\';
        dst[k++] = *s;
    }
    if (k + 1 < n) dst[k++] = '$';
    dst[k] = 0;
}

static void add_quant_fields(cJSON *o, const gptq_ckpt_meta *m) {
    cJSON_AddNumberToObject(o, "bits", m->bits);
    cJSON_AddNumberToObject(o, "group_size", m->group_size);
    cJSON_AddBoolToObject(o, "desc_act", m->desc_act);
    cJSON_AddBoolToObject(o, "sym", m->sym);
    cJSON_AddBoolToObject(o, "static_groups", m->static_groups);
    cJSON_AddNumberToObject(o, "damp_percent", hf_json_float(m->damp));
    cJSON_AddBoolToObject(o, "true_sequential", m->true_sequential);
    cJSON_AddBoolToObject(o, "lm_head", m->lm_head);
    cJSON_AddStringToObject(o, "quant_method", "gptq");
    cJSON_AddStringToObject(o, "checkpoint_format", "gptq");
}

static int write_json(const char *dir, const char *name, cJSON *root) {
    char *text = cJSON_Print(root);
    int rc = fs_write_text(dir, name, text);
    free(text);
    return rc;
}

static int write_configs(const char *src_dir, const char *tmp, const gptq_packed *packed, char *const *names, int n,
                         const gptq_ckpt_meta *meta) {
    char *p = fs_join(src_dir, "config.json");
    char *text = fs_read_all(p, NULL);
    free(p);
    if (!text) return -1;
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    if (!cfg) return gptq_fail("%s/config.json: not valid JSON", src_dir);
    cJSON_DeleteItemFromObject(cfg, "quantization_config");
    cJSON *qc = cJSON_AddObjectToObject(cfg, "quantization_config");
    add_quant_fields(qc, meta);
    /* Layers left in float are excluded with GPTQModel's negative "dynamic" patterns. */
    cJSON *dyn = NULL;
    for (int k = 0; k < n; k++) {
        if (packed[k].qweight || !names[k] || (k == n - 1 && !meta->lm_head)) continue;
        if (!dyn) dyn = cJSON_AddObjectToObject(qc, "dynamic");
        char pat[200];
        regex_escape(pat + 2, sizeof pat - 2, names[k]);
        pat[0] = '-', pat[1] = ':';
        cJSON_AddItemToObject(dyn, pat, cJSON_CreateObject());
    }
    int rc = write_json(tmp, "config.json", cfg);
    cJSON_Delete(cfg);
    if (rc) return rc;
    cJSON *q = cJSON_CreateObject();
    add_quant_fields(q, meta);
    cJSON_AddStringToObject(q, "model_file_base_name", "model");
    rc = write_json(tmp, "quantize_config.json", q);
    cJSON_Delete(q);
    return rc;
}

/* Is `name` (a tensor) the weight of a module that was quantized? Returns its index or -1. */
static int quantized_module_of(const char *name, const gptq_packed *packed, char *const *names, int n) {
    const char *dot = strrchr(name, '.');
    if (!dot || strcmp(dot, ".weight") != 0) return -1;
    size_t plen = (size_t)(dot - name);
    for (int k = 0; k < n; k++)
        if (packed[k].qweight && names[k] && strlen(names[k]) == plen && strncmp(names[k], name, plen) == 0) return k;
    return -1;
}

int gptq_ckpt_write(const char *src_dir, const st_archive *src, const gptq_packed *packed, char *const *names, int n,
                    const gptq_ckpt_meta *meta, const char *out_dir, int force) {
    if (fs_exists(out_dir) && !force) return gptq_fail("%s: already exists (pass --force to replace it)", out_dir);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid());
    fs_remove_tree(tmp);
    if (fs_mkdirs(tmp) != 0) return -1;
    int rc = write_configs(src_dir, tmp, packed, names, n, meta);

    st_writer w;
    st_writer_init(&w);
    st_writer_meta(&w, "format", "pt");
    st_writer_meta(&w, "quantizer", "gptq " "0.1.0");
    char nm[320];
    for (int i = 0; i < src->n_tensors && rc == 0; i++) {
        const st_tensor *t = &src->tensors[i];
        if (quantized_module_of(t->name, packed, names, n) < 0) st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    for (int k = 0; k < n && rc == 0; k++) {
        const gptq_packed *p = &packed[k];
        if (!p->qweight) continue;
        int64_t sq[2] = {p->in * p->bits / 32, p->out}, sz[2] = {p->groups, p->out * p->bits / 32}, ss[2] = {p->groups, p->out},
                sg[1] = {p->in};
        snprintf(nm, sizeof nm, "%s.qweight", names[k]);
        st_writer_add(&w, nm, DT_I32, 2, sq, p->qweight);
        snprintf(nm, sizeof nm, "%s.qzeros", names[k]);
        st_writer_add(&w, nm, DT_I32, 2, sz, p->qzeros);
        snprintf(nm, sizeof nm, "%s.scales", names[k]);
        st_writer_add(&w, nm, DT_F16, 2, ss, p->scales);
        snprintf(nm, sizeof nm, "%s.g_idx", names[k]);
        st_writer_add(&w, nm, DT_I32, 1, sg, p->g_idx);
    }
    if (rc == 0) {
        char *path = fs_join(tmp, "model.safetensors");
        rc = st_writer_write(&w, path);
        free(path);
    }
    st_writer_free(&w);
    for (int i = 0; tokenizer_files[i] && rc == 0; i++) {
        char *from = fs_join(src_dir, tokenizer_files[i]);
        if (fs_exists(from)) {
            char *to = fs_join(tmp, tokenizer_files[i]);
            rc = fs_copy_file(from, to);
            free(to);
        }
        free(from);
    }
    if (rc == 0) {
        char old[4200];
        snprintf(old, sizeof old, "%s.old.%ld", out_dir, (long)getpid());
        int had = fs_exists(out_dir);
        if (had && rename(out_dir, old) != 0) rc = gptq_fail("%s: cannot replace the existing directory", out_dir);
        else if (rename(tmp, out_dir) != 0) {
            rc = gptq_fail("%s: cannot rename the finished checkpoint into place", out_dir);
            if (had) rename(old, out_dir);
        } else if (had) {
            fs_remove_tree(old);
        }
    }
    if (rc != 0) fs_remove_tree(tmp);
    return rc;
}
