#include "model/random_model.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "io/safetensors.h"
#include "text/tokenizer_synth.h"

/* ---------------- shapes ---------------- */

static void base_llama(hf_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_type = ROPE_DEFAULT;
    c->tie_embeddings = 0;
    c->n_eos = 1;
}

const char *random_model_shape_names(void) { return "llama2-7b, llama3-8b, tinyllama-1.1b"; }

int random_model_shape(const char *name, hf_config *c, gptq_dtype *native) {
    base_llama(c);
    if (strcmp(name, "llama2-7b") == 0) {
        c->dim = 4096, c->hidden_dim = 11008, c->n_layers = 32, c->n_heads = 32, c->n_kv_heads = 32;
        c->vocab_size = 32000, c->max_pos = 4096;
        c->bos_id = 1, c->eos_ids[0] = 2;
        c->dtype = DT_F16;
    } else if (strcmp(name, "llama3-8b") == 0) {
        c->dim = 4096, c->hidden_dim = 14336, c->n_layers = 32, c->n_heads = 32, c->n_kv_heads = 8;
        c->vocab_size = 128256, c->max_pos = 8192;
        c->rope_theta = 500000.0f;
        c->rope_type = ROPE_LLAMA3;
        c->rope_factor = 8, c->rope_low_freq_factor = 1, c->rope_high_freq_factor = 4, c->rope_original_max_pos = 8192;
        c->bos_id = 128000, c->eos_ids[0] = 128001;
        c->dtype = DT_BF16;
    } else if (strcmp(name, "tinyllama-1.1b") == 0) {
        c->dim = 2048, c->hidden_dim = 5632, c->n_layers = 22, c->n_heads = 32, c->n_kv_heads = 4;
        c->vocab_size = 32000, c->max_pos = 2048;
        c->bos_id = 1, c->eos_ids[0] = 2;
        c->dtype = DT_BF16;
    } else {
        return gptq_fail("unknown shape '%s' (known: %s, or a config.json)", name, random_model_shape_names());
    }
    c->head_dim = c->dim / c->n_heads;
    if (native) *native = c->dtype;
    return 0;
}

/* Specials at the top of the vocabulary: all of bos/eos within 1024 of its end. */
static int specials_at_top(const hf_config *c) {
    if (c->bos_id < 256 || c->vocab_size - c->bos_id > 1024) return 0;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < 256 || c->vocab_size - c->eos_ids[i] > 1024) return 0;
    return 1;
}

int random_model_override(hf_config *c, int n_layers, int vocab_size) {
    if (n_layers < 0 || vocab_size < 0) return gptq_fail("layer and vocabulary overrides must be positive");
    if (n_layers > 0) c->n_layers = n_layers;
    if (vocab_size > 0 && vocab_size != c->vocab_size) {
        if (specials_at_top(c)) {
            int shift = vocab_size - c->vocab_size;
            if (c->bos_id + shift < 256)
                return gptq_fail("vocabulary size %d is too small for the special tokens at the top of the %d-token "
                                 "vocabulary",
                                 vocab_size, c->vocab_size);
            c->bos_id += shift;
            for (int i = 0; i < c->n_eos; i++) c->eos_ids[i] += shift;
        } else {
            if (c->bos_id >= vocab_size) return gptq_fail("bos_token_id %d is outside vocabulary size %d", c->bos_id, vocab_size);
            for (int i = 0; i < c->n_eos; i++)
                if (c->eos_ids[i] >= vocab_size)
                    return gptq_fail("eos_token_id %d is outside vocabulary size %d", c->eos_ids[i], vocab_size);
        }
        c->vocab_size = vocab_size;
    }
    return 0;
}

/* ---------------- the normal table and the counter-based generator ---------------- */

#define NTAB 65536
static float ztab[NTAB];

/* Standard normal quantiles of (i + 0.5) / NTAB, by bisection on erfc (upper half; the
 * lower half mirrors it, so the table is exactly symmetric). */
static void init_ztab(void) {
    static int done;
    if (done) return;
    for (int i = NTAB / 2; i < NTAB; i++) {
        double q = (NTAB - i - 0.5) / NTAB; /* upper tail probability */
        double lo = 0, hi = 10;
        for (int it = 0; it < 60; it++) {
            double mid = 0.5 * (lo + hi);
            if (0.5 * erfc(mid / sqrt(2.0)) > q) lo = mid;
            else hi = mid;
        }
        ztab[i] = (float)(0.5 * (lo + hi));
        ztab[NTAB - 1 - i] = -ztab[i];
    }
    done = 1;
}

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9E3779B97F4A7C15ull

static uint64_t tensor_key(uint64_t seed, const char *name) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return mix64(mix64(seed + GOLDEN) ^ h);
}

/* ---------------- the tensors ---------------- */

typedef struct rm_job rm_job;

typedef struct {
    char name[112];
    int ndim;
    int64_t shape[2];
    int64_t numel;
    float mean, std;
    int shard;
    rm_job *job;
} rm_tensor;

struct rm_job {
    gptq_dtype dt;
    uint64_t seed;
    volatile sig_atomic_t *cancel;
    progress prog;
    int64_t bytes_done;
    uint16_t *tab16; /* (NTAB) the current tensor's values in F16/BF16 */
    float *tab32;    /* (NTAB) ... in F32 */
    rm_tensor *t;
    int n, cap;
};

static void add_tensor(rm_job *j, const char *name, int ndim, int64_t d0, int64_t d1, float mean, float std) {
    if (j->n == j->cap) j->t = xrealloc(j->t, sizeof(rm_tensor) * (j->cap = j->cap ? 2 * j->cap : 256));
    rm_tensor *t = &j->t[j->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0, t->shape[1] = d1;
    t->numel = ndim == 1 ? d0 : d0 * d1;
    t->mean = mean, t->std = std;
    t->job = j;
}

/* The state dict in transformers' order. */
static void plan_tensors(rm_job *j, const hf_config *c) {
    const float s = 0.02f, s_out = 0.02f / sqrtf(2.0f * c->n_layers);
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    char n[112];
    add_tensor(j, "model.embed_tokens.weight", 2, c->vocab_size, c->dim, 0, s);
    for (int l = 0; l < c->n_layers; l++) {
        const struct {
            const char *name;
            int64_t out, in;
            float std;
            int bias;
        } lin[7] = {
            {"self_attn.q_proj", qd, c->dim, s, c->qkv_bias},          {"self_attn.k_proj", kvd, c->dim, s, c->qkv_bias},
            {"self_attn.v_proj", kvd, c->dim, s, c->qkv_bias},         {"self_attn.o_proj", c->dim, qd, s_out, c->o_bias},
            {"mlp.gate_proj", c->hidden_dim, c->dim, s, c->mlp_bias}, {"mlp.up_proj", c->hidden_dim, c->dim, s, c->mlp_bias},
            {"mlp.down_proj", c->dim, c->hidden_dim, s_out, c->mlp_bias},
        };
        for (int k = 0; k < 7; k++) {
            snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, lin[k].name);
            add_tensor(j, n, 2, lin[k].out, lin[k].in, 0, lin[k].std);
            if (lin[k].bias) {
                snprintf(n, sizeof n, "model.layers.%d.%s.bias", l, lin[k].name);
                add_tensor(j, n, 1, lin[k].out, 0, 0, s);
            }
        }
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        add_tensor(j, n, 1, c->dim, 0, 1, s);
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        add_tensor(j, n, 1, c->dim, 0, 1, s);
    }
    add_tensor(j, "model.norm.weight", 1, c->dim, 0, 1, s);
    if (!c->tie_embeddings) add_tensor(j, "lm_head.weight", 2, c->vocab_size, c->dim, 0, s);
}

#define CHUNK ((size_t)1 << 16) /* elements per parallel work item (a multiple of 4) */

static int fill_tensor(void *ctx, void *dst, size_t nbytes) {
    rm_tensor *t = ctx;
    rm_job *j = t->job;
    if (j->cancel && *j->cancel) return gptq_fail("interrupted");
    size_t es = dtype_size(j->dt), n = (size_t)t->numel;
    if (nbytes != n * es) return gptq_fail("%s: internal error: size mismatch", t->name);
    /* This tensor's table of NTAB values, already in the output dtype. */
    uint16_t *tab16 = j->tab16;
    float *tab32 = j->tab32;
    for (int i = 0; i < NTAB; i++) {
        float v = t->mean + t->std * ztab[i];
        if (j->dt == DT_F32) tab32[i] = v;
        else tab16[i] = j->dt == DT_BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    }
    const uint64_t key = tensor_key(j->seed, t->name);
    const int64_t n_chunks = (int64_t)((n + CHUNK - 1) / CHUNK);
    const int wide = j->dt == DT_F32;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        size_t e0 = (size_t)ch * CHUNK, e1 = e0 + CHUNK < n ? e0 + CHUNK : n;
        uint16_t *d16 = dst;
        float *d32 = dst;
        size_t e = e0;
        if (!wide) {
            for (; e + 4 <= e1; e += 4) {
                uint64_t h = mix64(key + ((e >> 2) + 1) * GOLDEN);
                d16[e] = tab16[h & 0xffff];
                d16[e + 1] = tab16[(h >> 16) & 0xffff];
                d16[e + 2] = tab16[(h >> 32) & 0xffff];
                d16[e + 3] = tab16[h >> 48];
            }
        } else {
            for (; e + 4 <= e1; e += 4) {
                uint64_t h = mix64(key + ((e >> 2) + 1) * GOLDEN);
                d32[e] = tab32[h & 0xffff];
                d32[e + 1] = tab32[(h >> 16) & 0xffff];
                d32[e + 2] = tab32[(h >> 32) & 0xffff];
                d32[e + 3] = tab32[h >> 48];
            }
        }
        if (e < e1) {
            uint64_t h = mix64(key + ((e >> 2) + 1) * GOLDEN);
            for (int lane = 0; e < e1; e++, lane++) {
                unsigned idx = (unsigned)(h >> (16 * lane)) & 0xffff;
                if (wide) d32[e] = tab32[idx];
                else d16[e] = tab16[idx];
            }
        }
    }
    j->bytes_done += (int64_t)nbytes;
    progress_update(&j->prog, (long)(j->bytes_done >> 20));
    return 0;
}

/* ---------------- small files ---------------- */



static int write_config(const char *dir, const hf_config *c) {
    char *text = hf_config_to_json(c);
    cJSON *r = cJSON_Parse(text);
    free(text);
    if (!r) return gptq_fail("%s/config.json: internal error building JSON", dir);
    cJSON_AddNumberToObject(r, "initializer_range", 0.02);
    text = cJSON_Print(r);
    cJSON_Delete(r);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    strcpy(text + len, "\n");
    int rc = fs_write_text(dir, "config.json", text);
    free(text);
    return rc;
}

static int write_generation_config(const char *dir, const hf_config *c) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "bos_token_id", c->bos_id);
    if (c->n_eos == 1) {
        cJSON_AddNumberToObject(r, "eos_token_id", c->eos_ids[0]);
    } else {
        cJSON *e = cJSON_AddArrayToObject(r, "eos_token_id");
        for (int i = 0; i < c->n_eos; i++) cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos_ids[i]));
    }
    /* As Meta's Llama-2 / Llama-3 releases ship it. */
    cJSON_AddBoolToObject(r, "do_sample", 1);
    cJSON_AddNumberToObject(r, "temperature", 0.6);
    cJSON_AddNumberToObject(r, "top_p", 0.9);
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    strcpy(text + len, "\n");
    int rc = fs_write_text(dir, "generation_config.json", text);
    free(text);
    return rc;
}

static int write_index(const char *dir, rm_job *j, int n_shards, int64_t total_bytes, int64_t n_params) {
    cJSON *r = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(r, "metadata");
    cJSON_AddNumberToObject(meta, "total_parameters", (double)n_params);
    cJSON_AddNumberToObject(meta, "total_size", (double)total_bytes);
    cJSON *map = cJSON_AddObjectToObject(r, "weight_map");
    /* names sorted, as transformers writes them */
    int *order = xmalloc(sizeof(int) * j->n);
    for (int i = 0; i < j->n; i++) order[i] = i;
    for (int i = 1; i < j->n; i++) { /* insertion sort: a few hundred names */
        int k = order[i], p = i - 1;
        while (p >= 0 && strcmp(j->t[order[p]].name, j->t[k].name) > 0) {
            order[p + 1] = order[p];
            p--;
        }
        order[p + 1] = k;
    }
    for (int i = 0; i < j->n; i++) {
        const rm_tensor *t = &j->t[order[i]];
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", t->shard + 1, n_shards);
        cJSON_AddStringToObject(map, t->name, file);
    }
    free(order);
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    strcpy(text + len, "\n");
    int rc = fs_write_text(dir, "model.safetensors.index.json", text);
    free(text);
    return rc;
}

/* ---------------- the whole directory ---------------- */

/* BOS/EOS for configs that do not name them: 1 and 2 (Llama-2's), avoiding each other. */
static void resolve_specials(hf_config *c) {
    if (c->n_eos > HF_MAX_EOS) c->n_eos = HF_MAX_EOS;
    if (c->bos_id < 0) {
        for (int cand = 1;; cand = cand == 1 ? 0 : cand + (cand == 0 ? 2 : 1)) {
            int taken = 0;
            for (int i = 0; i < c->n_eos; i++) taken |= c->eos_ids[i] == cand;
            if (!taken) {
                c->bos_id = cand;
                break;
            }
        }
    }
    if (c->n_eos == 0) {
        c->eos_ids[0] = c->bos_id == 2 ? 1 : 2;
        c->n_eos = 1;
    }
}

static int check_space(const char *dir, int64_t need) {
    struct statvfs sv;
    if (statvfs(dir, &sv) != 0) return 0; /* cannot tell: let the writes find out */
    double avail = (double)sv.f_bavail * (double)sv.f_frsize;
    if (avail < (double)need + 64e6) /* (64 MB to spare for everything else) */
        return gptq_fail("%s: not enough disk space: the checkpoint needs %.1f MB (+64 MB to spare), %.1f MB free", dir,
                         need / 1e6, avail / 1e6);
    return 0;
}

static int write_all(const hf_config *c, const random_model_opts *o, const char *tmp, random_model_info *info) {
    if (o->dtype != DT_F16 && o->dtype != DT_BF16 && o->dtype != DT_F32)
        return gptq_fail("random-model: dtype must be F16, BF16 or F32");
    tok_synth_spec ts = {.vocab_size = c->vocab_size, .bos_id = c->bos_id, .n_eos = c->n_eos, .model_max_length = c->max_pos};
    for (int i = 0; i < c->n_eos && i < TOK_SYNTH_MAX_EOS; i++) ts.eos_ids[i] = c->eos_ids[i];
    if (ts.n_eos > TOK_SYNTH_MAX_EOS) ts.n_eos = TOK_SYNTH_MAX_EOS;

    rm_job j = {.dt = o->dtype, .seed = o->seed, .cancel = o->cancel};
    j.tab16 = xmalloc(sizeof(uint16_t) * NTAB);
    j.tab32 = xmalloc(sizeof(float) * NTAB);
    plan_tensors(&j, c);
    int64_t total = 0, n_params = 0;
    size_t es = dtype_size(o->dtype);
    for (int i = 0; i < j.n; i++) total += j.t[i].numel * (int64_t)es, n_params += j.t[i].numel;
    /* Shards: consecutive tensors, a new file when the next tensor would overflow one. */
    double max_shard = o->max_shard_bytes > 0 ? o->max_shard_bytes : 5e9;
    int n_shards = 1;
    double cur = 0;
    for (int i = 0; i < j.n; i++) {
        double b = (double)j.t[i].numel * es;
        if (cur > 0 && cur + b > max_shard) n_shards++, cur = 0;
        cur += b;
        j.t[i].shard = n_shards - 1;
    }
    int rc = check_space(tmp, total);
    /* Small files first: a bad config or vocabulary fails before gigabytes are written. */
    if (rc == 0) rc = tokenizer_synth_write(tmp, &ts);
    if (rc == 0) rc = write_config(tmp, c);
    if (rc == 0) rc = write_generation_config(tmp, c);
    if (rc == 0 && n_shards > 1) rc = write_index(tmp, &j, n_shards, total, n_params);
    init_ztab();
    progress_start(&j.prog, "random-model MiB", (long)(total >> 20));
    if (!o->progress) j.prog.enabled = 0;
    for (int s = 0; s < n_shards && rc == 0; s++) {
        st_writer w;
        st_writer_init(&w);
        st_writer_meta(&w, "format", "pt");
        for (int i = 0; i < j.n; i++)
            if (j.t[i].shard == s) st_writer_add_fill(&w, j.t[i].name, o->dtype, j.t[i].ndim, j.t[i].shape, fill_tensor, &j.t[i]);
        char file[64];
        if (n_shards == 1) snprintf(file, sizeof file, "model.safetensors");
        else snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        char *path = fs_join(tmp, file);
        rc = st_writer_write(&w, path);
        free(path);
        st_writer_free(&w);
    }
    progress_end(&j.prog);
    free(j.t), free(j.tab16), free(j.tab32);
    if (info) info->n_params = n_params, info->total_bytes = total, info->n_shards = n_shards;
    return rc;
}

/* An empty directory, or one holding a config.json. */
static int looks_replaceable(const char *dir) {
    if (!fs_is_dir(dir)) return 0;
    char *cfg = fs_join(dir, "config.json");
    int ok = fs_exists(cfg);
    free(cfg);
    if (ok) return 1;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int empty = 1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

int random_model_write(const hf_config *cfg, const random_model_opts *o, const char *dir_in, random_model_info *info) {
    hf_config c = *cfg;
    resolve_specials(&c);
    c.dtype = o->dtype;
    if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
        c.vocab_size <= 0 || c.n_heads % c.n_kv_heads)
        return gptq_fail("random-model: invalid model shape");

    size_t len = strlen(dir_in);
    while (len > 1 && dir_in[len - 1] == '/') len--;
    if (len == 0) return gptq_fail("random-model: empty output directory name");
    char *dir = xmalloc(len + 1);
    memcpy(dir, dir_in, len);
    dir[len] = 0;
    if (fs_exists(dir) && !o->force) {
        gptq_fail("%s: already exists (use --force to replace it)", dir);
        free(dir);
        return -1;
    }
    /* --force replaces model directories (or empty ones) only: a typo in --out must not
     * delete unrelated data. */
    if (fs_exists(dir) && !looks_replaceable(dir)) {
        gptq_fail("%s: exists and is not a model directory (no config.json); not replacing it", dir);
        free(dir);
        return -1;
    }
    /* The parent must exist for the temporary sibling directory. */
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int rc = fs_mkdirs(dir);
        *slash = '/';
        if (rc != 0) {
            free(dir);
            return -1;
        }
    }
    char *tmp = xmalloc(len + 48), *old = xmalloc(len + 48);
    snprintf(tmp, len + 48, "%s.tmp.%ld", dir, (long)getpid());
    snprintf(old, len + 48, "%s.old.%ld", dir, (long)getpid());
    int rc = fs_remove_tree(tmp);
    if (rc == 0 && mkdir(tmp, 0755) != 0) rc = gptq_fail("%s: cannot create directory: %s", tmp, strerror(errno));
    if (rc == 0) {
        rc = write_all(&c, o, tmp, info);
        if (rc == 0) {
            int had = fs_exists(dir);
            if (had && rename(dir, old) != 0) rc = gptq_fail("%s: cannot move the old directory aside: %s", dir, strerror(errno));
            if (rc == 0 && rename(tmp, dir) != 0) {
                rc = gptq_fail("%s: cannot rename %s to it: %s", dir, tmp, strerror(errno));
                if (had) rename(old, dir);
            }
            if (rc == 0 && had) fs_remove_tree(old);
        }
        if (rc != 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", gptq_last_error());
            fs_remove_tree(tmp);
            gptq_fail("%s", msg);
        }
    }
    free(tmp), free(old), free(dir);
    return rc;
}
