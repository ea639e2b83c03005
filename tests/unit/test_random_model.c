/* random-model: a tiny random checkpoint loads with llama_load, has the promised weight
 * statistics, runs a finite forward pass, is byte-identical for any thread count, and
 * carries a valid byte-level BPE tokenizer.json of exactly vocab_size tokens. */
#include <cjson/cJSON.h>
#include <omp.h>

#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/safetensors.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "text/tokenizer_synth.h"

static hf_config tiny_config(void) {
    hf_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.dim = 128, c.hidden_dim = 344, c.n_layers = 3, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 32;
    c.vocab_size = 1000, c.max_pos = 256, c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.bos_id = -1; /* let random_model pick 1 / 2 */
    return c;
}

static int files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = fs_read_all(a, &na), *y = fs_read_all(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return eq;
}

static void stats(const st_tensor *t, double *mean, double *std) {
    float *v = xmalloc(sizeof(float) * t->numel);
    convert_to_f32(v, t->data, t->dtype, (size_t)t->numel);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t->numel; i++) s += v[i], s2 += (double)v[i] * v[i];
    *mean = s / t->numel;
    *std = sqrt(s2 / t->numel - *mean * *mean);
    free(v);
}

typedef struct {
    const char *s;
    int id;
} vent;

static int cmp_vent(const void *a, const void *b) { return strcmp(((const vent *)a)->s, ((const vent *)b)->s); }

/* id of a vocabulary string (sorted table), or -1 */
static int vfind(const vent *v, int n, const char *s) {
    vent key = {s, 0};
    const vent *r = bsearch(&key, v, n, sizeof(vent), cmp_vent);
    return r ? r->id : -1;
}

/* Checks a tokenizer.json: ids 0..V-1 each once, specials where expected, every merge's
 * parts in the vocabulary and its result a distinct vocabulary entry. */
static void check_tokenizer_json(const char *text, int V, int bos, const char *bos_name, int eos, const char *eos_name) {
    cJSON *r = cJSON_Parse(text);
    CHECK(r != NULL, "tokenizer.json parses");
    if (!r) return;
    const cJSON *model = cJSON_GetObjectItem(r, "model");
    const cJSON *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
    CHECK(cJSON_GetArraySize(vocab) == V, "vocab has %d entries, expected %d", cJSON_GetArraySize(vocab), V);
    char *seen = xcalloc(V, 1);
    const char **by_id = xcalloc(V, sizeof(char *));
    int bad = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int id = (int)it->valuedouble;
        if (id < 0 || id >= V || seen[id]) bad++;
        else seen[id] = 1, by_id[id] = it->string;
    }
    CHECK(bad == 0, "%d vocabulary ids out of range or repeated", bad);
    CHECK(by_id[bos] && strcmp(by_id[bos], bos_name) == 0, "id %d is %s", bos, by_id[bos] ? by_id[bos] : "(none)");
    CHECK(by_id[eos] && strcmp(by_id[eos], eos_name) == 0, "id %d is %s", eos, by_id[eos] ? by_id[eos] : "(none)");
    vent *sorted = xmalloc(sizeof(vent) * V);
    int nv = 0;
    for (int id = 0; id < V; id++)
        if (by_id[id]) sorted[nv++] = (vent){by_id[id], id};
    qsort(sorted, nv, sizeof(vent), cmp_vent);
    int n_merges = cJSON_GetArraySize(merges), bad_merges = 0;
    int *result_ids = xmalloc(sizeof(int) * (n_merges + 1));
    int k = 0;
    cJSON_ArrayForEach(it, merges) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        char buf[1024];
        if (!cJSON_IsString(a) || !cJSON_IsString(b) || vfind(sorted, nv, a->valuestring) < 0 ||
            vfind(sorted, nv, b->valuestring) < 0 || strlen(a->valuestring) + strlen(b->valuestring) >= sizeof buf) {
            bad_merges++;
            continue;
        }
        size_t la = strlen(a->valuestring);
        memcpy(buf, a->valuestring, la);
        strcpy(buf + la, b->valuestring);
        int m = vfind(sorted, nv, buf);
        if (m < 0) bad_merges++;
        else result_ids[k++] = m;
    }
    CHECK(bad_merges == 0, "%d merges with parts or results outside the vocabulary", bad_merges);
    /* Distinct results, and together with 256 bytes and the specials they fill the vocabulary. */
    char *hit = xcalloc(V, 1);
    int dup = 0;
    for (int i = 0; i < k; i++) dup += hit[result_ids[i]]++ != 0;
    CHECK(dup == 0, "%d merges produce the same token", dup);
    const cJSON *added = cJSON_GetObjectItem(r, "added_tokens");
    CHECK(n_merges + 256 + cJSON_GetArraySize(added) == V, "%d merges + 256 bytes + %d specials != %d", n_merges,
          cJSON_GetArraySize(added), V);
    const cJSON *pre = cJSON_GetObjectItem(r, "pre_tokenizer");
    CHECK(pre && strcmp(cJSON_GetObjectItem(pre, "type")->valuestring, "Sequence") == 0, "pre_tokenizer is a Sequence");
    free(seen), free(by_id), free(result_ids), free(hit), free(sorted);
    cJSON_Delete(r);
}

int main(void) {
    const char *tmp = check_tmpdir("random_model");
    char d1[1100], d2[1100], d3[1100], p1[1200], p2[1200];
    snprintf(d1, sizeof d1, "%s/m1", tmp);
    snprintf(d2, sizeof d2, "%s/m2", tmp);
    snprintf(d3, sizeof d3, "%s/m3", tmp);

    /* Shapes. */
    hf_config c;
    gptq_dtype dt;
    CHECK(random_model_shape("llama2-7b", &c, &dt) == 0 && c.dim == 4096 && c.hidden_dim == 11008 && c.n_kv_heads == 32 &&
              c.vocab_size == 32000 && dt == DT_F16,
          "llama2-7b shape");
    CHECK(random_model_shape("llama3-8b", &c, &dt) == 0 && c.hidden_dim == 14336 && c.n_kv_heads == 8 &&
              c.vocab_size == 128256 && c.bos_id == 128000 && c.eos_ids[0] == 128001 && c.rope_type == ROPE_LLAMA3,
          "llama3-8b shape");
    CHECK(random_model_override(&c, 2, 128256 - 1000) == 0 && c.bos_id == 127000 && c.eos_ids[0] == 127001 && c.n_layers == 2,
          "llama3 specials move with the vocabulary end");
    CHECK(random_model_shape("tinyllama-1.1b", &c, &dt) == 0 && c.dim == 2048 && c.n_layers == 22 && c.n_kv_heads == 4,
          "tinyllama shape");
    CHECK(random_model_override(&c, 0, 2) != 0, "vocabulary override below the specials fails");
    CHECK(random_model_shape("llama9-1t", &c, &dt) != 0 && strstr(gptq_last_error(), "llama9-1t"), "unknown shape fails");

    /* A tiny sharded checkpoint, written with one thread and with two. */
    hf_config tc = tiny_config();
    random_model_opts o = {.dtype = DT_F16, .seed = 42, .max_shard_bytes = 300e3};
    random_model_info info;
    omp_set_num_threads(1);
    CHECK(random_model_write(&tc, &o, d1, &info) == 0, "write m1: %s", gptq_last_error());
    CHECK(info.n_shards > 1, "several shards (%d)", info.n_shards);
    omp_set_num_threads(2);
    CHECK(random_model_write(&tc, &o, d2, NULL) == 0, "write m2: %s", gptq_last_error());
    for (int s = 1; s <= info.n_shards; s++) {
        char f[64];
        snprintf(f, sizeof f, "model-%05d-of-%05d.safetensors", s, info.n_shards);
        snprintf(p1, sizeof p1, "%s/%s", d1, f);
        snprintf(p2, sizeof p2, "%s/%s", d2, f);
        CHECK(files_equal(p1, p2), "%s identical for 1 and 2 threads", f);
    }
    const char *small_files[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                 "model.safetensors.index.json"};
    for (int i = 0; i < 5; i++) {
        snprintf(p1, sizeof p1, "%s/%s", d1, small_files[i]);
        snprintf(p2, sizeof p2, "%s/%s", d2, small_files[i]);
        CHECK(files_equal(p1, p2), "%s identical", small_files[i]);
    }

    /* Existing output: refused, or replaced with force; no temporary directory left. */
    CHECK(random_model_write(&tc, &o, d1, NULL) != 0 && strstr(gptq_last_error(), "already exists"), "refuses to overwrite");
    o.seed = 43;
    o.force = 1;
    o.dtype = DT_BF16;
    o.max_shard_bytes = 0;
    CHECK(random_model_write(&tc, &o, d2, NULL) == 0, "force replaces: %s", gptq_last_error());
    snprintf(p2, sizeof p2, "%s/model.safetensors", d2);
    CHECK(fs_exists(p2), "single model.safetensors after the rewrite");
    snprintf(p2, sizeof p2, "%s/model-00001-of-%05d.safetensors", d2, info.n_shards);
    CHECK(!fs_exists(p2), "old shards gone");
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "ls -d '%s'/*.tmp.* '%s'/*.old.* 2>/dev/null | grep -q .", tmp, tmp);
    CHECK(system(cmd) != 0, "no temporary directories left");

    /* A bad vocabulary: fails cleanly and leaves nothing. */
    hf_config bad = tc;
    bad.vocab_size = 200;
    CHECK(random_model_write(&bad, &o, d3, NULL) != 0 && strstr(gptq_last_error(), "too small"), "vocab 200 fails: %s",
          gptq_last_error());
    CHECK(!fs_exists(d3), "no output after a failure");
    CHECK(system(cmd) != 0, "no temporary directories left after a failure");

    /* The checkpoint loads and has the promised statistics. */
    llama_model m;
    CHECK(llama_load(&m, d1) == 0, "llama_load m1: %s", gptq_last_error());
    if (m.layers) {
        CHECK(m.cfg.bos_id == 1 && m.cfg.n_eos == 1 && m.cfg.eos_ids[0] == 2, "bos/eos filled in as 1/2");
        CHECK(m.cfg.dtype == DT_F16, "config dtype f16");
        CHECK(m.n_params == info.n_params, "n_params %lld vs %lld", (long long)m.n_params, (long long)info.n_params);
        double mean, sd;
        stats(st_find(&m.st, "model.layers.0.mlp.gate_proj.weight"), &mean, &sd);
        CHECK(fabs(mean) < 1e-3 && fabs(sd - 0.02) < 1e-3, "gate_proj mean %g std %g", mean, sd);
        stats(st_find(&m.st, "model.layers.1.mlp.down_proj.weight"), &mean, &sd);
        double want = 0.02 / sqrt(2.0 * tc.n_layers);
        CHECK(fabs(mean) < 1e-3 && fabs(sd - want) < 0.05 * want, "down_proj mean %g std %g (want %g)", mean, sd, want);
        stats(st_find(&m.st, "model.norm.weight"), &mean, &sd);
        CHECK(fabs(mean - 1) < 0.01 && sd > 0.01 && sd < 0.03, "norm mean %g std %g", mean, sd);
        stats(st_find(&m.st, "lm_head.weight"), &mean, &sd);
        CHECK(fabs(sd - 0.02) < 1e-3, "lm_head std %g", sd);
        const st_tensor *q0 = st_find(&m.st, "model.layers.0.self_attn.q_proj.weight");
        const st_tensor *q1 = st_find(&m.st, "model.layers.1.self_attn.q_proj.weight");
        CHECK(q0 && q1 && memcmp(q0->data, q1->data, q0->nbytes) != 0, "layers differ");

        llama_state *s = llama_state_new(&m, 16, 16);
        int ids[8] = {1, 300, 301, 302, 5, 999, 17, 400};
        const float *lg = llama_forward(&m, s, ids, 8, 0, 0);
        int finite = 1;
        double s2 = 0;
        for (int i = 0; i < tc.vocab_size; i++) finite &= isfinite(lg[i]) != 0, s2 += (double)lg[i] * lg[i];
        double rms = sqrt(s2 / tc.vocab_size);
        CHECK(finite, "finite logits");
        /* lm_head std 0.02 on a unit-RMS input: logits RMS ~ 0.02 * sqrt(dim) = 0.23 */
        CHECK(rms > 0.1 && rms < 0.5, "logit RMS %g", rms);
        llama_state_free(s);
        llama_free(&m);
    }

    /* Different seed, different weights. */
    st_archive a1, a2;
    CHECK(st_open_dir(&a1, d1) == 0 && st_open_dir(&a2, d2) == 0, "open both");
    const st_tensor *t1 = st_find(&a1, "model.embed_tokens.weight"), *t2 = st_find(&a2, "model.embed_tokens.weight");
    CHECK(t1 && t2 && t1->dtype == DT_F16 && t2->dtype == DT_BF16, "dtypes f16 / bf16");
    if (t1 && t2) {
        float x1 = f16_to_f32(((const uint16_t *)t1->data)[0]), x2 = bf16_to_f32(((const uint16_t *)t2->data)[0]);
        float y1 = f16_to_f32(((const uint16_t *)t1->data)[1]), y2 = bf16_to_f32(((const uint16_t *)t2->data)[1]);
        CHECK(x1 != x2 || y1 != y2, "seeds 42 and 43 differ");
    }
    st_close(&a1), st_close(&a2);

    /* tokenizer.json of the tiny model (Llama-2 layout). */
    snprintf(p1, sizeof p1, "%s/tokenizer.json", d1);
    char *tj = fs_read_all(p1, NULL);
    if (tj) check_tokenizer_json(tj, tc.vocab_size, 1, "<s>", 2, "</s>");
    free(tj);

    /* Llama-3 layout: the last 256 ids special, Llama-3.1 names. */
    tok_synth_spec ts = {.vocab_size = 128256, .bos_id = 128000, .n_eos = 1, .eos_ids = {128001}, .model_max_length = 8192};
    tj = tokenizer_synth_json(&ts);
    CHECK(tj != NULL, "llama3 tokenizer: %s", gptq_last_error());
    if (tj) check_tokenizer_json(tj, 128256, 128000, "<|begin_of_text|>", 128001, "<|end_of_text|>");
    free(tj);
    char *nm = tokenizer_synth_special_name(&ts, 128009);
    CHECK(nm && strcmp(nm, "<|eot_id|>") == 0, "128009 is <|eot_id|>");
    free(nm);
    nm = tokenizer_synth_special_name(&ts, 128255);
    CHECK(nm && strcmp(nm, "<|reserved_special_token_247|>") == 0, "128255 is reserved 247");
    free(nm);
    /* Errors. */
    tok_synth_spec e1 = {.vocab_size = 257, .bos_id = 0, .n_eos = 1, .eos_ids = {1}};
    CHECK(tokenizer_synth_json(&e1) == NULL, "vocab 257 too small");
    tok_synth_spec e2 = {.vocab_size = 1000, .bos_id = 1000, .n_eos = 1, .eos_ids = {1}};
    CHECK(tokenizer_synth_json(&e2) == NULL && strstr(gptq_last_error(), "bos_token_id"), "bos outside vocab");
    tok_synth_spec e3 = {.vocab_size = 258, .bos_id = 0, .n_eos = 1, .eos_ids = {1}};
    tj = tokenizer_synth_json(&e3);
    CHECK(tj != NULL, "vocab 258 = bytes + 2 specials, no merges");
    free(tj);
    /* GPT-2 style: BOS = EOS, one <|endoftext|> token at the top. */
    tok_synth_spec g2 = {.vocab_size = 600, .bos_id = 599, .n_eos = 1, .eos_ids = {599}};
    tj = tokenizer_synth_json(&g2);
    CHECK(tj != NULL, "bos == eos: %s", gptq_last_error());
    if (tj) check_tokenizer_json(tj, 600, 599, "<|endoftext|>", 599, "<|endoftext|>");
    free(tj);
    return check_done();
}
