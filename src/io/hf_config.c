#include "io/hf_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "core/fs.h"

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* Required positive integer. */
static int req_int(const cJSON *root, const char *key, int *out, const char *path) {
    const cJSON *j = get(root, key);
    if (!j) return gptq_fail("%s: missing required key \"%s\"", path, key);
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < 1 || j->valuedouble > 1e9)
        return gptq_fail("%s: \"%s\" must be a positive integer", path, key);
    *out = (int)j->valuedouble;
    return 0;
}

/* Optional integer: leaves *out unchanged if absent or null. */
static int opt_int(const cJSON *root, const char *key, int *out, const char *path) {
    const cJSON *j = get(root, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || fabs(j->valuedouble) > 1e9)
        return gptq_fail("%s: \"%s\" must be an integer", path, key);
    *out = (int)j->valuedouble;
    return 0;
}

static int opt_float(const cJSON *root, const char *key, float *out, const char *path) {
    const cJSON *j = get(root, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) return gptq_fail("%s: \"%s\" must be a number", path, key);
    *out = (float)j->valuedouble;
    return 0;
}

static int opt_bool(const cJSON *root, const char *key, int *out, const char *path) {
    const cJSON *j = get(root, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsBool(j)) return gptq_fail("%s: \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(j);
    return 0;
}

/* rope_scaling (older configs) or rope_parameters (transformers 5): type + factors; the
 * latter may also carry rope_theta. */
static int parse_rope(hf_config *c, const cJSON *r, const char *key, const char *path) {
    if (!r || cJSON_IsNull(r)) return 0;
    if (!cJSON_IsObject(r)) return gptq_fail("%s: \"%s\" must be an object", path, key);
    if (opt_float(r, "rope_theta", &c->rope_theta, path)) return -1;
    const cJSON *t = get(r, "rope_type");
    if (!t) t = get(r, "type");
    if (!t || cJSON_IsNull(t)) return 0;
    if (!cJSON_IsString(t)) return gptq_fail("%s: %s.rope_type must be a string", path, key);
    const char *ty = t->valuestring;
    if (strcmp(ty, "default") == 0) {
        c->rope_type = ROPE_DEFAULT;
    } else if (strcmp(ty, "llama3") == 0) {
        c->rope_type = ROPE_LLAMA3;
        c->rope_factor = 8, c->rope_low_freq_factor = 1, c->rope_high_freq_factor = 4, c->rope_original_max_pos = 8192;
        if (opt_float(r, "factor", &c->rope_factor, path) || opt_float(r, "low_freq_factor", &c->rope_low_freq_factor, path) ||
            opt_float(r, "high_freq_factor", &c->rope_high_freq_factor, path) ||
            opt_int(r, "original_max_position_embeddings", &c->rope_original_max_pos, path))
            return -1;
        if (c->rope_factor <= 0 || c->rope_low_freq_factor <= 0 || c->rope_high_freq_factor <= c->rope_low_freq_factor ||
            c->rope_original_max_pos <= 0)
            return gptq_fail("%s: invalid llama3 rope scaling parameters", path);
    } else if (strcmp(ty, "linear") == 0) {
        c->rope_type = ROPE_LINEAR;
        c->rope_factor = 1;
        if (opt_float(r, "factor", &c->rope_factor, path)) return -1;
        if (c->rope_factor <= 0) return gptq_fail("%s: rope scaling factor must be positive", path);
    } else {
        return gptq_fail("%s: unsupported rope type \"%s\" (supported: default, llama3, linear)", path, ty);
    }
    return 0;
}

/* A token id: an integer in 0..1e9 (anything else, e.g. 1e400, is an error rather than an
 * out-of-range float-to-int conversion). */
static int is_token_id(const cJSON *j) {
    return cJSON_IsNumber(j) && j->valuedouble >= 0 && j->valuedouble <= 1e9 && j->valuedouble == floor(j->valuedouble);
}

static int parse_eos(hf_config *c, const cJSON *j, const char *path) {
    if (!j || cJSON_IsNull(j)) return 0;
    if (cJSON_IsNumber(j)) {
        if (!is_token_id(j)) return gptq_fail("%s: \"eos_token_id\" must be a non-negative integer", path);
        c->eos_ids[0] = (int)j->valuedouble;
        c->n_eos = 1;
        return 0;
    }
    if (!cJSON_IsArray(j)) return gptq_fail("%s: \"eos_token_id\" must be an integer or a list", path);
    c->n_eos = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        if (!is_token_id(it)) return gptq_fail("%s: \"eos_token_id\" list must hold non-negative integers", path);
        if (c->n_eos < HF_MAX_EOS) c->eos_ids[c->n_eos++] = (int)it->valuedouble;
    }
    return 0;
}

static int check_bits(int bits, const char *what, const char *path) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return gptq_fail("%s: %s bits %d is not supported (2, 3, 4, 8)", path, what, bits);
    return 0;
}

/* GPTQModel's "dynamic": {"-:regex": {}, "+:regex": {"bits": 8, ...}, "regex": {...}}. */
static int parse_dynamic(hf_quant_config *q, const cJSON *dyn, const char *path) {
    if (!dyn || cJSON_IsNull(dyn)) return 0;
    if (!cJSON_IsObject(dyn)) return gptq_fail("%s: \"dynamic\" must be an object", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, dyn) {
        q->rules = xrealloc(q->rules, sizeof(hf_quant_rule) * (q->n_rules + 1));
        hf_quant_rule *r = &q->rules[q->n_rules++];
        memset(r, 0, sizeof *r);
        const char *key = it->string;
        if (strncmp(key, "-:", 2) == 0) r->skip = 1, key += 2;
        else if (strncmp(key, "+:", 2) == 0) key += 2;
        r->pattern = xstrdup(key);
        r->bits = r->group_size = r->desc_act = r->sym = HF_INHERIT;
        int err;
        PCRE2_SIZE off;
        r->code = pcre2_compile((PCRE2_SPTR)key, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED | PCRE2_UTF, &err, &off, NULL);
        if (!r->code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            return gptq_fail("%s: \"dynamic\" pattern \"%s\" is not a valid regular expression (%s at %zu)", path, key,
                             (const char *)msg, (size_t)off);
        }
        if (!cJSON_IsObject(it)) return gptq_fail("%s: \"dynamic\" value for \"%s\" must be an object", path, it->string);
        if (r->skip) continue;
        if (opt_int(it, "bits", &r->bits, path) || opt_int(it, "group_size", &r->group_size, path) ||
            opt_bool(it, "desc_act", &r->desc_act, path) || opt_bool(it, "sym", &r->sym, path))
            return -1;
        if (r->bits != HF_INHERIT && check_bits(r->bits, "dynamic", path)) return -1;
        if (r->group_size != HF_INHERIT && (r->group_size == 0 || r->group_size < -1))
            return gptq_fail("%s: \"dynamic\" group_size %d for \"%s\" is invalid", path, r->group_size, key);
    }
    return 0;
}

int hf_quant_module_settings(const hf_quant_config *q, const char *name, hf_quant_module *out) {
    *out = (hf_quant_module){q->bits, q->group_size, q->desc_act, q->sym};
    for (int i = 0; i < q->n_rules; i++) {
        const hf_quant_rule *r = &q->rules[i];
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->code, NULL);
        int rc = pcre2_match(r->code, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (rc < 0) continue;
        if (r->skip) return 0;
        if (r->bits != HF_INHERIT) out->bits = r->bits;
        if (r->group_size != HF_INHERIT) out->group_size = r->group_size;
        if (r->desc_act != HF_INHERIT) out->desc_act = r->desc_act;
        if (r->sym != HF_INHERIT) out->sym = r->sym;
        return 1;
    }
    return 1;
}

void hf_quant_config_free(hf_quant_config *q) {
    for (int i = 0; i < q->n_rules; i++) {
        free(q->rules[i].pattern);
        pcre2_code_free(q->rules[i].code);
    }
    free(q->rules);
    q->rules = NULL;
    q->n_rules = 0;
}

/* Reads a GPTQ quantization config object. Unknown methods are errors, not silently
 * treated as float checkpoints. */
static int parse_quant(hf_quant_config *q, const cJSON *o, const char *path) {
    memset(q, 0, sizeof *q);
    if (!cJSON_IsObject(o)) return gptq_fail("%s: quantization_config must be an object", path);
    const cJSON *m = get(o, "quant_method");
    if (cJSON_IsString(m) && strcmp(m->valuestring, "gptq") != 0)
        return gptq_fail("%s: quant_method \"%s\" is not supported (only gptq)", path, m->valuestring);
    q->present = 1;
    q->group_size = -1;
    q->sym = 1;
    q->true_sequential = 1;
    q->damp = 0.01f;
    if (req_int(o, "bits", &q->bits, path) || opt_int(o, "group_size", &q->group_size, path) ||
        opt_bool(o, "desc_act", &q->desc_act, path) || opt_bool(o, "sym", &q->sym, path) ||
        opt_bool(o, "static_groups", &q->static_groups, path) || opt_bool(o, "true_sequential", &q->true_sequential, path) ||
        opt_bool(o, "lm_head", &q->lm_head, path) || opt_float(o, "damp_percent", &q->damp, path))
        return -1;
    if (check_bits(q->bits, "quantization", path)) return -1;
    if (q->group_size == 0 || q->group_size < -1) return gptq_fail("%s: group_size %d is invalid", path, q->group_size);
    const cJSON *f = get(o, "checkpoint_format");
    if (cJSON_IsString(f)) {
        if (strcmp(f->valuestring, "gptq_v2") == 0) q->format_v2 = 1;
        else if (strcmp(f->valuestring, "gptq") != 0)
            return gptq_fail("%s: checkpoint_format \"%s\" is not supported (gptq, gptq_v2)", path, f->valuestring);
    }
    if (parse_dynamic(q, get(o, "dynamic"), path) != 0) {
        hf_quant_config_free(q);
        return -1;
    }
    return 0;
}

int hf_quant_config_load(hf_quant_config *q, const char *path) {
    char *text = fs_read_all(path, NULL);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return gptq_fail("%s: not valid JSON", path);
    int rc = parse_quant(q, root, path);
    cJSON_Delete(root);
    return rc;
}

void hf_config_free(hf_config *c) {
    hf_quant_config_free(&c->quant);
}

int hf_config_load(hf_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    size_t len;
    char *text = fs_read_all(path, &len);
    if (!text) return -1;
    int rc = hf_config_parse(c, text, len, path);
    free(text);
    return rc;
}

int hf_config_parse(hf_config *c, const char *text, size_t len, const char *path) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return gptq_fail("%s: not valid JSON", path);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        gptq_fail("%s: not a JSON object", path);
        goto done;
    }
    const cJSON *mt = get(root, "model_type");
    if (!cJSON_IsString(mt)) {
        gptq_fail("%s: missing required key \"model_type\"", path);
        goto done;
    }
    if (strcmp(mt->valuestring, "llama") && strcmp(mt->valuestring, "mistral") && strcmp(mt->valuestring, "qwen2")) {
        gptq_fail("%s: model_type \"%s\" is not supported (llama, mistral, qwen2)", path, mt->valuestring);
        goto done;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    const cJSON *act = get(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && (strcmp(act->valuestring, "silu") == 0 || strcmp(act->valuestring, "swish") == 0))) {
        gptq_fail("%s: hidden_act must be \"silu\"", path);
        goto done;
    }
    if (req_int(root, "hidden_size", &c->dim, path) || req_int(root, "intermediate_size", &c->hidden_dim, path) ||
        req_int(root, "num_hidden_layers", &c->n_layers, path) || req_int(root, "num_attention_heads", &c->n_heads, path) ||
        req_int(root, "vocab_size", &c->vocab_size, path))
        goto done;
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->dim % c->n_heads == 0 ? c->dim / c->n_heads : 0;
    c->max_pos = 2048;
    c->norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->bos_id = -1;
    c->tie_embeddings = 0;
    c->dtype = DT_F32;
    if (opt_int(root, "num_key_value_heads", &c->n_kv_heads, path) || opt_int(root, "head_dim", &c->head_dim, path) ||
        opt_int(root, "max_position_embeddings", &c->max_pos, path) || opt_float(root, "rms_norm_eps", &c->norm_eps, path) ||
        opt_float(root, "rope_theta", &c->rope_theta, path) || opt_bool(root, "tie_word_embeddings", &c->tie_embeddings, path) ||
        opt_int(root, "bos_token_id", &c->bos_id, path) || parse_eos(c, get(root, "eos_token_id"), path) ||
        parse_rope(c, get(root, "rope_parameters"), "rope_parameters", path) ||
        parse_rope(c, get(root, "rope_scaling"), "rope_scaling", path))
        goto done;
    int attention_bias = 0;
    if (opt_bool(root, "attention_bias", &attention_bias, path) || opt_bool(root, "mlp_bias", &c->mlp_bias, path)) goto done;
    c->qkv_bias = attention_bias || strcmp(c->model_type, "qwen2") == 0;
    c->o_bias = attention_bias;
    const cJSON *dt = get(root, "torch_dtype");
    if (!cJSON_IsString(dt)) dt = get(root, "dtype");
    if (cJSON_IsString(dt)) {
        if (strcmp(dt->valuestring, "bfloat16") == 0) c->dtype = DT_BF16;
        else if (strcmp(dt->valuestring, "float16") == 0) c->dtype = DT_F16;
    }
    const cJSON *qc = get(root, "quantization_config");
    if (qc && !cJSON_IsNull(qc) && parse_quant(&c->quant, qc, path) != 0) goto done;
    if (c->head_dim <= 0) {
        gptq_fail("%s: hidden_size %d is not divisible by num_attention_heads %d and no head_dim is given", path, c->dim,
                  c->n_heads);
        goto done;
    }
    if (c->head_dim % 2) {
        gptq_fail("%s: head_dim %d must be even for rotary embeddings", path, c->head_dim);
        goto done;
    }
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads) {
        gptq_fail("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path, c->n_heads, c->n_kv_heads);
        goto done;
    }
    if (c->norm_eps <= 0 || c->rope_theta <= 0 || c->max_pos <= 0) {
        gptq_fail("%s: rms_norm_eps, rope_theta and max_position_embeddings must be positive", path);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) hf_config_free(c);
    return rc;
}

double hf_json_float(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

char *hf_config_to_json(const hf_config *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(r, "architectures");
    const char *cls = strcmp(c->model_type, "mistral") == 0 ? "MistralForCausalLM"
                      : strcmp(c->model_type, "qwen2") == 0 ? "Qwen2ForCausalLM"
                                                              : "LlamaForCausalLM";
    cJSON_AddItemToArray(arch, cJSON_CreateString(cls));
    cJSON_AddStringToObject(r, "model_type", c->model_type);
    cJSON_AddNumberToObject(r, "hidden_size", c->dim);
    cJSON_AddNumberToObject(r, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(r, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(r, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(r, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(r, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(r, "max_position_embeddings", c->max_pos);
    cJSON_AddNumberToObject(r, "rms_norm_eps", hf_json_float(c->norm_eps));
    cJSON_AddNumberToObject(r, "rope_theta", hf_json_float(c->rope_theta));
    if (c->rope_type == ROPE_LLAMA3) {
        cJSON *s = cJSON_AddObjectToObject(r, "rope_scaling");
        cJSON_AddStringToObject(s, "rope_type", "llama3");
        cJSON_AddNumberToObject(s, "factor", hf_json_float(c->rope_factor));
        cJSON_AddNumberToObject(s, "low_freq_factor", hf_json_float(c->rope_low_freq_factor));
        cJSON_AddNumberToObject(s, "high_freq_factor", hf_json_float(c->rope_high_freq_factor));
        cJSON_AddNumberToObject(s, "original_max_position_embeddings", c->rope_original_max_pos);
    } else if (c->rope_type == ROPE_LINEAR) {
        cJSON *s = cJSON_AddObjectToObject(r, "rope_scaling");
        cJSON_AddStringToObject(s, "rope_type", "linear");
        cJSON_AddNumberToObject(s, "factor", hf_json_float(c->rope_factor));
    }
    cJSON_AddStringToObject(r, "hidden_act", "silu");
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_embeddings);
    if (strcmp(c->model_type, "qwen2") != 0) cJSON_AddBoolToObject(r, "attention_bias", c->o_bias);
    cJSON_AddBoolToObject(r, "mlp_bias", c->mlp_bias);
    if (c->bos_id >= 0) cJSON_AddNumberToObject(r, "bos_token_id", c->bos_id);
    if (c->n_eos == 1) cJSON_AddNumberToObject(r, "eos_token_id", c->eos_ids[0]);
    else if (c->n_eos > 1) {
        cJSON *e = cJSON_AddArrayToObject(r, "eos_token_id");
        for (int i = 0; i < c->n_eos; i++) cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos_ids[i]));
    }
    cJSON_AddStringToObject(r, "torch_dtype", c->dtype == DT_BF16 ? "bfloat16" : c->dtype == DT_F16 ? "float16" : "float32");
    char *s = cJSON_Print(r);
    cJSON_Delete(r);
    return s;
}
