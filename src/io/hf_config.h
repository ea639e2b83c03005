/* The parts of a Hugging Face config.json that a Llama-family forward pass needs. */
#ifndef GPTQ_IO_HF_CONFIG_H
#define GPTQ_IO_HF_CONFIG_H

#include <stddef.h>

#include "core/dtype.h"

typedef enum { ROPE_DEFAULT = 0, ROPE_LLAMA3, ROPE_LINEAR } rope_kind;

#define HF_MAX_EOS 8

/* quantization_config of a GPTQ checkpoint (config.json, or quantize_config.json of older
 * AutoGPTQ checkpoints). */
typedef struct {
    int present;         /* a GPTQ quantization config was found */
    int bits;            /* 2, 3, 4, 8 */
    int group_size;      /* -1 or > 0 */
    int desc_act;        /* act-order: g_idx is not monotonic */
    int sym;
    int static_groups;
    int true_sequential;
    int format_v2;       /* checkpoint_format "gptq_v2": zero points stored as is (v1: minus one) */
    int lm_head;         /* lm_head is quantized too */
    float damp;          /* damp_percent */
    int n_rules;         /* GPTQModel "dynamic" per-module rules, in file order */
    struct hf_quant_rule *rules; /* (n_rules) */
} hf_quant_config;

/* One GPTQModel "dynamic" rule.  Key "-:REGEX" keeps matching modules in float; "+:REGEX"
 * or "REGEX" overrides bits / group_size / desc_act / sym for them.  Matching follows
 * Python's re.match on the module name ("model.layers.3.mlp.down_proj"): anchored at the
 * start only.  The first matching rule in file order decides. */
#define HF_INHERIT (-1000) /* an override field the rule does not set */
typedef struct hf_quant_rule {
    char *pattern;  /* the regex, PCRE2 syntax */
    void *code;     /* compiled pcre2_code (8-bit) */
    int skip;       /* 1: "-:" rule */
    int bits, group_size, desc_act, sym; /* HF_INHERIT or the override */
} hf_quant_rule;

/* The settings one module is stored with. */
typedef struct {
    int bits, group_size, desc_act, sym;
} hf_quant_module;

typedef struct {
    char model_type[32];   /* "llama", "mistral", "qwen2" */
    int dim;               /* hidden_size */
    int hidden_dim;        /* intermediate_size */
    int n_layers;          /* num_hidden_layers */
    int n_heads;           /* num_attention_heads */
    int n_kv_heads;        /* num_key_value_heads (GQA); = n_heads if absent */
    int head_dim;          /* head_dim; = dim / n_heads if absent */
    int vocab_size;
    int max_pos;           /* max_position_embeddings */
    float norm_eps;        /* rms_norm_eps */
    float rope_theta;      /* top level or in rope_parameters */
    rope_kind rope_type;
    float rope_factor;               /* llama3 / linear scaling factor */
    float rope_low_freq_factor;      /* llama3 */
    float rope_high_freq_factor;     /* llama3 */
    int rope_original_max_pos;       /* llama3: original_max_position_embeddings */
    int tie_embeddings;    /* tie_word_embeddings */
    int qkv_bias;          /* q/k/v projections have biases (qwen2, attention_bias) */
    int o_bias;            /* o_proj has a bias (attention_bias) */
    int mlp_bias;
    int bos_id;            /* -1 if unknown */
    int n_eos;
    int eos_ids[HF_MAX_EOS];
    gptq_dtype dtype;      /* torch_dtype / dtype, informational */
    hf_quant_config quant; /* GPTQ checkpoints only */
} hf_config;

/* Parses DIR/config.json-style text at `path`. Missing required keys, wrong types,
 * non-positive sizes and unsupported architectures/activations are errors naming the file. */
int hf_config_load(hf_config *c, const char *path);
/* The same from config.json text in memory (`path` names it in errors). */
int hf_config_parse(hf_config *c, const char *text, size_t len, const char *path);

/* Parses a quantization config object from a JSON file (quantize_config.json) into q. */
int hf_quant_config_load(hf_quant_config *q, const char *path);
/* Settings of module `name` under q's top-level values and dynamic rules: 1 (quantized,
 * *out filled), or 0 (a "-:" rule keeps it in float). */
int hf_quant_module_settings(const hf_quant_config *q, const char *name, hf_quant_module *out);
void hf_quant_config_free(hf_quant_config *q);
void hf_config_free(hf_config *c);

/* A float as the shortest decimal that reads back to the same float, for JSON output
 * (1e-05 and 0.01, not the widened doubles 9.99999974737875e-06 and 0.00999999977). */
double hf_json_float(float f);

/* Builds a config.json text (heap string) for `c`, as transformers writes it. */
char *hf_config_to_json(const hf_config *c);

#endif
