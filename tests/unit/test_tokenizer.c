/* Tokenizer tests against Hugging Face: tests/fixtures/<model>.tokens.json (written by
 * tests/reference/tokenizer_fixtures.py) holds transformers' and raw `tokenizers`' ids and
 * decodes for hard-case strings, for the whole WikiText-2 test file (count, sha256, first
 * ids), and for tokenizer.json variants that this test rebuilds in a scratch directory.
 * Also: malformed tokenizer.json files, invalid UTF-8 input, BOS/EOS and vocabulary queries. */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "text/tokenizer.h"

static cJSON *load_json(const char *path) {
    size_t n;
    char *text = fs_read_all(path, &n);
    if (!text) {
        fprintf(stderr, "%s\n", gptq_last_error());
        exit(1);
    }
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    if (!j) {
        fprintf(stderr, "%s: not valid JSON\n", path);
        exit(1);
    }
    return j;
}

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

/* The bytes of a "<key>_hex" field (heap, NUL-terminated), length in *n. */
static char *hex_field(const cJSON *o, const char *key, size_t *n) {
    char name[64];
    snprintf(name, sizeof name, "%s_hex", key);
    const cJSON *h = get(o, name);
    const char *s = cJSON_IsString(h) ? h->valuestring : "";
    *n = strlen(s) / 2;
    char *out = malloc(*n + 1);
    for (size_t i = 0; i < *n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[*n] = 0;
    return out;
}

/* Compares ids with a JSON array; on mismatch describes the first difference in msg. */
static int same_ids(const int *ids, int n, const cJSON *arr, char *msg, size_t msg_len) {
    int m = cJSON_GetArraySize(arr), i = 0;
    const cJSON *e = arr ? arr->child : NULL;
    for (; i < n && e; i++, e = e->next)
        if (ids[i] != e->valueint) break;
    if (i == n && i == m) return 1;
    snprintf(msg, msg_len, "%d ids vs %d expected; first difference at %d: got %d, want %d", n, m, i,
             i < n ? ids[i] : -1, e ? e->valueint : -1);
    return 0;
}

/* A "raw_..." key falls back to the plain one: the fixture stores raw results only where
 * they differ from transformers'. */
static const char *key_or_plain(const cJSON *c, const char *key) {
    char name[64];
    if (!key) return NULL;
    snprintf(name, sizeof name, "%s_hex", key);
    if (strncmp(key, "raw_", 4) == 0 && !get(c, key) && !get(c, name)) return key + 4;
    return key;
}

static void check_one(const tokenizer *t, const cJSON *c, const char *label, const char *ids_key, const char *bos_key,
                      const char *dec_key, const char *dec_bos_key) {
    ids_key = key_or_plain(c, ids_key);
    bos_key = key_or_plain(c, bos_key);
    dec_key = key_or_plain(c, dec_key);
    dec_bos_key = key_or_plain(c, dec_bos_key);
    size_t len;
    char *text = hex_field(c, "text", &len);
    char msg[256];
    int *ids;
    int n = tokenizer_encode(t, text, len, 0, &ids);
    char shown[64]; /* the text, control characters escaped */
    size_t k = 0;
    for (size_t i = 0; i < len && k + 5 < sizeof shown; i++) {
        unsigned char ch = (unsigned char)text[i];
        k += (size_t)(ch < 0x20 ? snprintf(shown + k, sizeof shown - k, "\\x%02x", ch)
                                : snprintf(shown + k, sizeof shown - k, "%c", ch));
    }
    shown[k] = 0;
    CHECK(n >= 0 && same_ids(ids, n, get(c, ids_key), msg, sizeof msg), "%s %s %s: %s", label, ids_key, shown, msg);
    if (dec_key && n >= 0) {
        size_t want_n, got_n;
        char *want = hex_field(c, dec_key, &want_n);
        char *got = tokenizer_decode_n(t, ids, n, &got_n);
        CHECK(got && got_n == want_n && memcmp(got, want, want_n) == 0, "%s %s %s: got \"%.60s\" want \"%.60s\"", label,
              dec_key, shown, got ? got : "(null)", want);
        free(got);
        free(want);
    }
    free(ids);
    if (bos_key) {
        n = tokenizer_encode(t, text, len, 1, &ids);
        CHECK(n >= 0 && same_ids(ids, n, get(c, bos_key), msg, sizeof msg), "%s %s %s: %s", label, bos_key, shown, msg);
        if (dec_bos_key && n >= 0) {
            size_t want_n, got_n;
            char *want = hex_field(c, dec_bos_key, &want_n);
            char *got = tokenizer_decode_n(t, ids, n, &got_n);
            CHECK(got && got_n == want_n && memcmp(got, want, want_n) == 0, "%s %s %s: got \"%.60s\" want \"%.60s\"",
                  label, dec_bos_key, shown, got ? got : "(null)", want);
            free(got);
            free(want);
        }
        free(ids);
    }
    free(text);
}

static void ids_digest(const int *ids, int n, char hex[65]) {
    unsigned char *b = malloc((size_t)n * 4 + 1);
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        b[4 * i] = (unsigned char)v;
        b[4 * i + 1] = (unsigned char)(v >> 8);
        b[4 * i + 2] = (unsigned char)(v >> 16);
        b[4 * i + 3] = (unsigned char)(v >> 24);
    }
    sha256_hex(b, (size_t)n * 4, hex);
    free(b);
}

static void check_whole_file(const tokenizer *t, const char *text, size_t len, const cJSON *want, const char *label) {
    int *ids;
    double t0 = now_seconds();
    int n = tokenizer_encode(t, text, len, 0, &ids);
    double dt = now_seconds() - t0;
    printf("%s: whole-file encode %.3f s, %d ids (%.2f MB/s)\n", label, dt, n, len / dt / 1e6);
    CHECK(n == get(want, "count")->valueint, "%s: %d ids, want %d", label, n, get(want, "count")->valueint);
    char hex[65];
    ids_digest(ids, n > 0 ? n : 0, hex);
    CHECK(strcmp(hex, get(want, "sha256")->valuestring) == 0, "%s: sha256 %s, want %s", label, hex,
          get(want, "sha256")->valuestring);
    const cJSON *first = get(want, "first");
    if (first) {
        char msg[256];
        int m = cJSON_GetArraySize(first);
        CHECK(n >= m && same_ids(ids, m, first, msg, sizeof msg), "%s: first ids: %s", label, msg);
    }
    /* A guard against quadratic behaviour (that would take minutes), not a benchmark: wide
     * enough for a loaded 2-core CI machine and for the sanitizer build. */
#if defined(__SANITIZE_ADDRESS__)
    const double limit = 24.0;
#else
    const double limit = 6.0;
#endif
    CHECK(dt < limit, "%s: whole-file encode took %.2f s", label, dt);
    free(ids);
}

/* Writes the base tokenizer.json with a variant's edits into dir (as the fixture script does). */
static void write_variant(const char *base_path, const cJSON *v, const char *dir) {
    cJSON *root = load_json(base_path);
    const cJSON *patch = get(v, "patch"), *mpatch = get(v, "model_patch"), *extra = get(v, "added_tokens");
    for (const cJSON *e = patch ? patch->child : NULL; e; e = e->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, e->string);
        cJSON_AddItemToObject(root, e->string, cJSON_Duplicate(e, 1));
    }
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    for (const cJSON *e = mpatch ? mpatch->child : NULL; e; e = e->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(model, e->string);
        cJSON_AddItemToObject(model, e->string, cJSON_Duplicate(e, 1));
    }
    if (cJSON_IsTrue(get(v, "merges_as_strings"))) {
        cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges"), *strs = cJSON_CreateArray();
        for (const cJSON *m = merges->child; m; m = m->next) {
            char buf[512];
            snprintf(buf, sizeof buf, "%s %s", m->child->valuestring, m->child->next->valuestring);
            cJSON_AddItemToArray(strs, cJSON_CreateString(buf));
        }
        cJSON_ReplaceItemInObjectCaseSensitive(model, "merges", strs);
    }
    cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *e = extra ? extra->child : NULL; e; e = e->next)
        cJSON_AddItemToArray(added, cJSON_Duplicate(e, 1));
    char *text = cJSON_PrintUnformatted(root);
    char *path = fs_join(dir, "tokenizer.json");
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    free(path);
    free(text);
    cJSON_Delete(root);
}

static void copy_file(const char *src_dir, const char *dst_dir, const char *name) {
    char *src = fs_join(src_dir, name), *dst = fs_join(dst_dir, name);
    if (fs_exists(src)) CHECK(fs_copy_file(src, dst) == 0, "copy %s: %s", src, gptq_last_error());
    free(src);
    free(dst);
}

/* The model's tokenizer files with tokenizer_config.json edited (null deletes a key). */
static void write_config_variant(const char *model_dir, const cJSON *v, const char *dir) {
    copy_file(model_dir, dir, "tokenizer.json");
    copy_file(model_dir, dir, "config.json");
    copy_file(model_dir, dir, "generation_config.json");
    char *src = fs_join(model_dir, "tokenizer_config.json");
    cJSON *cfg = load_json(src);
    free(src);
    for (const cJSON *e = get(v, "config_patch")->child; e; e = e->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, e->string);
        if (!cJSON_IsNull(e)) cJSON_AddItemToObject(cfg, e->string, cJSON_Duplicate(e, 1));
    }
    char *text = cJSON_PrintUnformatted(cfg);
    char *path = fs_join(dir, "tokenizer_config.json");
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    free(path);
    free(text);
    cJSON_Delete(cfg);
}

static void check_model(const char *name, const char *wiki, size_t wiki_len) {
    char rel[256], fixture[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    const char *dir = check_shared(rel);
    snprintf(fixture, sizeof fixture, "tests/fixtures/%s.tokens.json", name);
    cJSON *fx = load_json(check_src(fixture));
    char dir_copy[1024];
    snprintf(dir_copy, sizeof dir_copy, "%s", dir);

    tokenizer *t = tokenizer_load(dir_copy);
    tokenizer *raw = tokenizer_load_ex(dir_copy, TOKENIZER_LOAD_RAW);
    CHECK(t && raw, "%s: load failed: %s", name, gptq_last_error());
    if (!t || !raw) {
        cJSON_Delete(fx);
        return;
    }
    printf("%s: %s, %d ids (raw %d), bos %d\n", name, tokenizer_kind_name(t), tokenizer_vocab_size(t),
           tokenizer_vocab_size(raw), tokenizer_bos(t));
    CHECK(tokenizer_vocab_size(t) == get(fx, "vocab_size")->valueint, "%s: vocab size %d, want %d", name,
          tokenizer_vocab_size(t), get(fx, "vocab_size")->valueint);
    CHECK(tokenizer_vocab_size(raw) == get(fx, "raw_vocab_size")->valueint, "%s: raw vocab size %d, want %d", name,
          tokenizer_vocab_size(raw), get(fx, "raw_vocab_size")->valueint);
    const cJSON *bos = get(fx, "bos_id");
    CHECK(tokenizer_bos(t) == (cJSON_GetArraySize(bos) ? bos->child->valueint : -1), "%s: bos %d", name,
          tokenizer_bos(t));

    for (const cJSON *c = get(fx, "cases")->child; c; c = c->next) {
        check_one(t, c, name, "ids", "ids_bos", "decode", "decode_bos");
        check_one(raw, c, name, "raw_ids", "raw_ids_bos", "raw_decode", "raw_decode_bos");
    }
    char label[256];
    snprintf(label, sizeof label, "%s (transformers)", name);
    check_whole_file(t, wiki, wiki_len, get(fx, "wikitext"), label);
    snprintf(label, sizeof label, "%s (raw tokenizer.json)", name);
    check_whole_file(raw, wiki, wiki_len, get(fx, "raw_wikitext"), label);

    /* tokenizer.json variants, loaded raw from a scratch directory */
    char base[1100];
    snprintf(base, sizeof base, "%s/tokenizer.json", dir_copy);
    for (const cJSON *v = get(fx, "variants")->child; v; v = v->next) {
        char vname[256];
        snprintf(vname, sizeof vname, "tok-%s", get(v, "name")->valuestring);
        const char *vdir = check_tmpdir(vname);
        write_variant(base, v, vdir);
        tokenizer *vt = tokenizer_load_ex(vdir, TOKENIZER_LOAD_RAW);
        CHECK(vt, "%s: load failed: %s", vname, gptq_last_error());
        if (!vt) continue;
        for (const cJSON *c = get(v, "cases")->child; c; c = c->next)
            check_one(vt, c, vname, "ids", "ids_bos", "decode", NULL);
        if (get(v, "wikitext")) check_whole_file(vt, wiki, wiki_len, get(v, "wikitext"), vname);
        tokenizer_free(vt);
    }

    /* tokenizer_config.json variants, loaded as transformers would */
    const cJSON *cvs = get(fx, "config_variants");
    for (const cJSON *v = cvs ? cvs->child : NULL; v; v = v->next) {
        char vname[256];
        snprintf(vname, sizeof vname, "tok-%s", get(v, "name")->valuestring);
        const char *vdir = check_tmpdir(vname);
        write_config_variant(dir_copy, v, vdir);
        tokenizer *vt = tokenizer_load(vdir);
        CHECK(vt, "%s: load failed: %s", vname, gptq_last_error());
        if (!vt) continue;
        CHECK(tokenizer_vocab_size(vt) == get(v, "vocab_size")->valueint, "%s: vocab size %d, want %d", vname,
              tokenizer_vocab_size(vt), get(v, "vocab_size")->valueint);
        for (const cJSON *c = get(v, "cases")->child; c; c = c->next)
            check_one(vt, c, vname, "ids", "ids_bos", "decode", "decode_bos");
        tokenizer_free(vt);
    }

    /* invalid UTF-8 must not crash; byte-level BPE round-trips to the lossy repair */
    static const char bad[] = "\xff\xfe abc \xc3\x28 \xe2\x82 end\x80 \xed\xa0\x80 \xf4\x90\x80\x80 ok\xc3";
    static const char bad_lossy[] = "\xef\xbf\xbd\xef\xbf\xbd abc \xef\xbf\xbd( \xef\xbf\xbd end\xef\xbf\xbd "
                                    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                    "\xef\xbf\xbd ok\xef\xbf\xbd";
    for (int k = 0; k < 2; k++) {
        const tokenizer *u = k ? raw : t;
        int *ids;
        int n = tokenizer_encode(u, bad, sizeof bad - 1, 1, &ids);
        CHECK(n > 0, "%s: invalid UTF-8 input: %s", name, gptq_last_error());
        int in_range = 1;
        for (int i = 0; i < n; i++) in_range &= ids[i] >= 0 && ids[i] < tokenizer_vocab_size(u);
        CHECK(in_range, "%s: invalid UTF-8 input gave ids out of range", name);
        char *s = n > 0 ? tokenizer_decode(u, ids + 1, n - 1) : NULL;
        CHECK(s != NULL, "%s: decoding invalid UTF-8 input failed", name);
        if (s && tokenizer_get_kind(u) == TOK_BYTE_LEVEL_BPE)
            CHECK(strcmp(s, bad_lossy) == 0, "%s: invalid UTF-8 round trip gave \"%s\"", name, s);
        free(s);
        free(ids);
    }

    /* invalid ids */
    int bad_ids[2] = {5, tokenizer_vocab_size(t)};
    gptq_clear_error();
    char *s = tokenizer_decode(t, bad_ids, 2);
    CHECK(s == NULL && strstr(gptq_last_error(), "id"), "%s: decoding an out-of-range id: %s", name, gptq_last_error());
    free(s);
    bad_ids[1] = -1;
    s = tokenizer_decode(t, bad_ids, 2);
    CHECK(s == NULL, "%s: decoding id -1 should fail", name);
    free(s);
    CHECK(tokenizer_token(t, -1) == NULL && tokenizer_token(t, tokenizer_vocab_size(t)) == NULL,
          "%s: tokenizer_token out of range", name);

    tokenizer_free(t);
    tokenizer_free(raw);
    cJSON_Delete(fx);
}

static void check_queries(void) {
    tokenizer *l = tokenizer_load(check_shared("models/llama-bpe-26m"));
    tokenizer *s = tokenizer_load(check_shared("models/stories260K"));
    tokenizer *sr = tokenizer_load_ex(check_shared("models/stories260K"), TOKENIZER_LOAD_RAW);
    CHECK(l && s && sr, "load: %s", gptq_last_error());
    if (!l || !s || !sr) return;
    CHECK(tokenizer_get_kind(l) == TOK_BYTE_LEVEL_BPE && strcmp(tokenizer_kind_name(l), "byte-level BPE") == 0,
          "llama-bpe kind");
    CHECK(tokenizer_get_kind(s) == TOK_SENTENCEPIECE_BPE && strcmp(tokenizer_kind_name(s), "SentencePiece BPE") == 0,
          "stories kind");
    CHECK(tokenizer_bos(l) == 0 && tokenizer_bos(s) == 1 && tokenizer_bos(sr) == 1, "bos %d %d %d", tokenizer_bos(l),
          tokenizer_bos(s), tokenizer_bos(sr));
    CHECK(tokenizer_is_eos(l, 1) && !tokenizer_is_eos(l, 0), "llama-bpe eos");
    CHECK(tokenizer_is_eos(s, 2) && tokenizer_is_eos(s, 513) && !tokenizer_is_eos(s, 1), "stories eos");
    CHECK(tokenizer_is_eos(sr, 2) && !tokenizer_is_eos(sr, 1), "stories raw eos");
    CHECK(tokenizer_vocab_size(l) == 8192 && tokenizer_vocab_size(sr) == 512 && tokenizer_vocab_size(s) == 514,
          "vocab sizes %d %d %d", tokenizer_vocab_size(l), tokenizer_vocab_size(sr), tokenizer_vocab_size(s));
    CHECK(tokenizer_model_vocab_size(l) == 8192 && tokenizer_model_vocab_size(s) == 512 &&
              tokenizer_model_vocab_size(sr) == 512,
          "model vocab sizes");
    CHECK(strcmp(tokenizer_token(l, 0), "<|begin_of_text|>") == 0, "llama-bpe token 0");
    CHECK(strcmp(tokenizer_token(s, 1), "\n<s>\n") == 0 && strcmp(tokenizer_token(s, 512), "<s>") == 0 &&
              strcmp(tokenizer_token(s, 3), "<0x00>") == 0,
          "stories tokens");

    /* no post-processor: add_bos_token / add_eos_token of tokenizer_config.json decide */
    for (int flag = 0; flag < 2; flag++) {
        const char *dir = check_tmpdir(flag ? "tok-no-template-bos" : "tok-no-template");
        char d[1024];
        snprintf(d, sizeof d, "%s", dir);
        cJSON *root = load_json(check_shared("models/llama-bpe-26m/tokenizer.json"));
        cJSON_ReplaceItemInObjectCaseSensitive(root, "post_processor", cJSON_CreateNull());
        char *text = cJSON_PrintUnformatted(root), *p = fs_join(d, "tokenizer.json");
        FILE *f = fopen(p, "wb");
        fputs(text, f);
        fclose(f);
        free(p);
        free(text);
        cJSON_Delete(root);
        p = fs_join(d, "tokenizer_config.json");
        f = fopen(p, "wb");
        fprintf(f,
                "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|end_of_text|>\", "
                "\"add_bos_token\": %s, \"add_eos_token\": %s}",
                flag ? "true" : "false", flag ? "true" : "false");
        fclose(f);
        free(p);
        tokenizer *nt = tokenizer_load(d);
        CHECK(nt, "no template: %s", gptq_last_error());
        if (!nt) continue;
        int *a, *b;
        int na = tokenizer_encode(nt, "hello world", 11, 0, &a);
        int nb = tokenizer_encode(nt, "hello world", 11, 1, &b);
        CHECK(tokenizer_bos(nt) == 0, "no template: bos %d", tokenizer_bos(nt));
        if (flag)
            CHECK(nb == na + 2 && b[0] == 0 && memcmp(a, b + 1, (size_t)na * sizeof *a) == 0 && b[nb - 1] == 1,
                  "no template, add_bos_token: %d vs %d ids", nb, na);
        else
            CHECK(nb == na && memcmp(a, b, (size_t)na * sizeof *a) == 0, "no template, no add_bos_token");
        free(a);
        free(b);
        tokenizer_free(nt);
    }
    tokenizer_free(l);
    tokenizer_free(s);
    tokenizer_free(sr);
}

/* Each malformed directory must fail with one line naming the offending file. */
static void check_malformed(void) {
    static const struct {
        const char *name, *tokenizer_json, *config_json, *expect;
    } cases[] = {
        {"not-json", "{\"model\": ", NULL, "not valid JSON"},
        {"not-object", "[1, 2]", NULL, "not a JSON object"},
        {"no-model", "{\"version\": \"1.0\"}", NULL, "model"},
        {"wordpiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", NULL, "WordPiece"},
        {"unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}", NULL, "Unigram"},
        {"no-vocab", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", NULL, "vocab"},
        {"no-merges", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", NULL, "merges"},
        {"bad-vocab-id", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", NULL, "id"},
        {"merge-unknown",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
         "\"merges\": [\"a b\", \"a c\"]}}",
         NULL, "\"c\""},
        {"merge-result-unknown",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
         "\"merges\": [[\"a\", \"b\"]]}}",
         NULL, "\"ab\""},
        {"merge-format",
         "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
         "\"merges\": [\"a b c\"]}}",
         NULL, "merge"},
        {"bad-regex",
         "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(ab\"}, "
         "\"behavior\": \"Isolated\", \"invert\": false}, "
         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         NULL, "regex"},
        {"bad-pretok",
         "{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, "
         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         NULL, "BertPreTokenizer"},
        {"bad-normalizer",
         "{\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"}, "
         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         NULL, "Precompiled"},
        {"bad-decoder",
         "{\"decoder\": {\"type\": \"WordPiece\"}, "
         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         NULL, "WordPiece"},
        {"bad-template",
         "{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
         "[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\"}}], "
         "\"special_tokens\": {}}, "
         "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         NULL, "<s>"},
        {"bad-config", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "{oops",
         "not valid JSON"},
        {"missing", NULL, NULL, "tokenizer.json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "tok-bad-%s", cases[i].name);
        const char *dir = check_tmpdir(name);
        char dir_copy[1024];
        snprintf(dir_copy, sizeof dir_copy, "%s", dir);
        const char *file = "tokenizer.json";
        if (cases[i].tokenizer_json) {
            char *p = fs_join(dir_copy, "tokenizer.json");
            FILE *f = fopen(p, "w");
            fputs(cases[i].tokenizer_json, f);
            fclose(f);
            free(p);
        }
        if (cases[i].config_json) {
            char *p = fs_join(dir_copy, "tokenizer_config.json");
            FILE *f = fopen(p, "w");
            fputs(cases[i].config_json, f);
            fclose(f);
            free(p);
            file = "tokenizer_config.json";
        }
        gptq_clear_error();
        tokenizer *t = tokenizer_load(dir_copy);
        const char *e = gptq_last_error();
        char want_path[1200];
        snprintf(want_path, sizeof want_path, "%s/%s", dir_copy, file);
        CHECK(t == NULL, "%s: loaded", name);
        CHECK(strstr(e, want_path) && strstr(e, cases[i].expect) && !strchr(e, '\n'),
              "%s: message \"%s\" should name %s and say \"%s\"", name, e, want_path, cases[i].expect);
        tokenizer_free(t);
    }
}

int main(void) {
    const char *wiki_path = check_shared("data/wikitext-2-raw/wiki.test.raw");
    size_t wiki_len;
    char *wiki = fs_read_all(wiki_path, &wiki_len);
    CHECK(wiki != NULL, "%s", gptq_last_error());
    if (!wiki) return check_done();
    check_model("llama-bpe-26m", wiki, wiki_len);
    check_model("stories260K", wiki, wiki_len);
    check_queries();
    check_malformed();
    free(wiki);
    return check_done();
}
