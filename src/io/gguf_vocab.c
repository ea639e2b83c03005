/* tokenizer.json <-> GGUF tokenizer metadata (see gguf_vocab.h). */
#include "io/gguf_vocab.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "text/strmap.h"

/* The pre-tokenizer regexes llama.cpp knows by name. */
static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char SPIECE[] = "\xE2\x96\x81"; /* ▁ */

static cJSON *read_json_file(const char *dir, const char *name, int required) {
    char *path = fs_join(dir, name);
    if (!required && !fs_exists(path)) {
        free(path);
        return NULL;
    }
    size_t len;
    char *text = fs_read_all(path, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    if (text && !j) gptq_fail("%s: not valid JSON", path);
    free(text);
    free(path);
    return j;
}

static const cJSON *field(const cJSON *o, const char *k) { return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL; }

/* The first Split regex anywhere in the pre_tokenizer, or NULL. */
static const char *split_regex(const cJSON *pt) {
    if (!pt) return NULL;
    const cJSON *ty = field(pt, "type");
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "Split") == 0) {
        const cJSON *re = field(field(pt, "pattern"), "Regex");
        return cJSON_IsString(re) ? re->valuestring : NULL;
    }
    const cJSON *list = field(pt, "pretokenizers");
    if (cJSON_IsArray(list))
        for (const cJSON *e = list->child; e; e = e->next) {
            const char *r = split_regex(e);
            if (r) return r;
        }
    return NULL;
}

/* Left and right of merge entry e ("a b" or ["a", "b"]) into heap strings. */
static int merge_parts(const cJSON *e, char **l, char **r) {
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
        *l = xstrdup(e->child->valuestring);
        *r = xstrdup(e->child->next->valuestring);
        return 0;
    }
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring, *sp = strchr(s, ' ');
        if (!sp || sp == s) return -1;
        *l = xmalloc((size_t)(sp - s) + 1);
        memcpy(*l, s, (size_t)(sp - s));
        (*l)[sp - s] = 0;
        *r = xstrdup(sp + 1);
        return 0;
    }
    return -1;
}

static int is_byte_token(const char *s) {
    return strlen(s) == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
           strchr("0123456789ABCDEFabcdef", s[3]) && strchr("0123456789ABCDEFabcdef", s[4]);
}

static int utf8_chars(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int gguf_vocab_write(gguf_writer *w, const char *dir, const hf_config *c) {
    char *path = fs_join(dir, "tokenizer.json");
    cJSON *root = read_json_file(dir, "tokenizer.json", 1), *tcfg = NULL;
    int rc = -1, n = c->vocab_size, bos = c->bos_id, eos = c->n_eos ? c->eos_ids[0] : -1, unk = -1, add_bos = 0;
    char **tok = xcalloc((size_t)n, sizeof(char *));
    int32_t *type = xcalloc((size_t)n, sizeof(int32_t));
    float *score = xcalloc((size_t)n, sizeof(float));
    char **merges = NULL;
    int n_merges = 0;
    if (!root) goto out;
    tcfg = read_json_file(dir, "tokenizer_config.json", 0);
    const cJSON *model = field(root, "model"), *vocab = field(model, "vocab"), *mlist = field(model, "merges");
    const cJSON *mtype = field(model, "type");
    if (!cJSON_IsObject(vocab) || (mtype && !(cJSON_IsString(mtype) && strcmp(mtype->valuestring, "BPE") == 0)) ||
        !cJSON_IsArray(mlist)) {
        gptq_fail("%s: GGUF export needs a BPE model with a vocab object and a merges list", path);
        goto out;
    }
    int byte_level = 0;
    {
        char *pt = cJSON_PrintUnformatted(field(root, "pre_tokenizer"));
        byte_level = pt && strstr(pt, "\"ByteLevel\"") != NULL;
        free(pt);
    }
    const cJSON *bf = field(model, "byte_fallback");
    if (!byte_level && !cJSON_IsTrue(bf)) {
        gptq_fail("%s: GGUF export supports byte-level BPE and SentencePiece-style BPE with byte_fallback only", path);
        goto out;
    }
    /* vocabulary */
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e)) {
            gptq_fail("%s: vocab entry is not a number", path);
            goto out;
        }
        int id = e->valueint;
        if (id < 0 || id >= n) {
            if (id >= n) gptq_warn("%s: token id %d is past the model's vocab_size %d; left out of the GGUF", path, id, n);
            continue;
        }
        free(tok[id]);
        tok[id] = xstrdup(e->string);
        type[id] = !byte_level && is_byte_token(e->string) ? GGUF_TOK_BYTE : GGUF_TOK_NORMAL;
    }
    const cJSON *unk_tok = field(model, "unk_token");
    if (cJSON_IsString(unk_tok)) {
        const cJSON *u = field(vocab, unk_tok->valuestring);
        if (cJSON_IsNumber(u) && u->valueint >= 0 && u->valueint < n) unk = u->valueint, type[unk] = GGUF_TOK_UNKNOWN;
    }
    const cJSON *added = field(root, "added_tokens");
    if (cJSON_IsArray(added))
        for (const cJSON *e = added->child; e; e = e->next) {
            const cJSON *id = field(e, "id"), *content = field(e, "content");
            if (!cJSON_IsNumber(id) || !cJSON_IsString(content)) continue;
            if (id->valueint < 0 || id->valueint >= n) {
                gptq_warn("%s: added token id %d is past the model's vocab_size %d; left out of the GGUF", path, id->valueint, n);
                continue;
            }
            free(tok[id->valueint]);
            tok[id->valueint] = xstrdup(content->valuestring);
            if (id->valueint != unk) type[id->valueint] = cJSON_IsTrue(field(e, "special")) ? GGUF_TOK_CONTROL : GGUF_TOK_USER_DEFINED;
        }
    for (int i = 0; i < n; i++)
        if (!tok[i]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", i);
            tok[i] = xstrdup(pad);
            type[i] = GGUF_TOK_UNUSED;
        }
    /* merges: strings for gpt2, scores for llama */
    int nm = cJSON_GetArraySize(mlist);
    merges = xcalloc((size_t)nm + 1, sizeof(char *));
    strmap ids;
    strmap_init(&ids, (size_t)n * 2 + 16);
    for (int i = 0; i < n; i++) strmap_put(&ids, tok[i], strlen(tok[i]), i);
    if (!byte_level)
        for (int i = 0; i < n; i++) score[i] = type[i] == GGUF_TOK_NORMAL && utf8_chars(tok[i]) > 1 ? -1e9f : 0.0f;
    int rank = 0;
    for (const cJSON *e = mlist->child; e; e = e->next, rank++) {
        char *l, *r;
        if (merge_parts(e, &l, &r)) {
            gptq_fail("%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", path, rank);
            strmap_free(&ids);
            goto out;
        }
        if (byte_level) {
            size_t a = strlen(l), b = strlen(r);
            char *m = xmalloc(a + b + 2);
            memcpy(m, l, a);
            m[a] = ' ';
            memcpy(m + a + 1, r, b + 1);
            merges[n_merges++] = m;
        } else {
            size_t a = strlen(l), b = strlen(r);
            char *cat = xmalloc(a + b + 1);
            memcpy(cat, l, a);
            memcpy(cat + a, r, b + 1);
            int id;
            if (strmap_get(&ids, cat, a + b, &id) && type[id] == GGUF_TOK_NORMAL && score[id] <= -1e9f) score[id] = -(float)rank;
            free(cat);
        }
        free(l), free(r);
    }
    strmap_free(&ids);

    /* BOS added by the post-processor template, or tokenizer_config's add_bos_token */
    char *pp = cJSON_PrintUnformatted(field(root, "post_processor"));
    if (pp && strstr(pp, "TemplateProcessing")) {
        const cJSON *single = field(field(root, "post_processor"), "single");
        if (cJSON_IsArray(single) && single->child && field(single->child, "SpecialToken")) add_bos = 1;
    }
    free(pp);
    const cJSON *ab = field(tcfg, "add_bos_token");
    if (cJSON_IsBool(ab)) add_bos = cJSON_IsTrue(ab);
    if (bos < 0 || bos >= n) bos = -1;
    if (eos < 0 || eos >= n) eos = -1;

    if (byte_level) {
        const char *re = split_regex(field(root, "pre_tokenizer"));
        const char *pre = "default";
        if (re && strcmp(re, LLAMA3_REGEX) == 0) pre = "llama-bpe";
        else if (re && strcmp(re, GPT2_REGEX) == 0) pre = "gpt-2";
        else gptq_warn("%s: pre-tokenizer regex not known to llama.cpp; writing tokenizer.ggml.pre \"default\"", path);
        gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_w_str(w, "tokenizer.ggml.pre", pre);
    } else {
        gguf_w_str(w, "tokenizer.ggml.model", "llama");
        gguf_w_str(w, "tokenizer.ggml.pre", "default");
    }
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, NULL, (uint64_t)n);
    if (!byte_level) gguf_w_arr_f32(w, "tokenizer.ggml.scores", score, (uint64_t)n);
    gguf_w_arr_i32(w, "tokenizer.ggml.token_type", type, (uint64_t)n);
    if (byte_level) gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, NULL, (uint64_t)n_merges);
    if (bos >= 0) gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (unk >= 0) gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", add_bos && bos >= 0);
    gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0);
    const cJSON *tmpl = field(tcfg, "chat_template");
    if (cJSON_IsString(tmpl)) gguf_w_str(w, "tokenizer.chat_template", tmpl->valuestring);
    rc = 0;
out:
    for (int i = 0; i < n; i++) free(tok[i]);
    free(tok), free(type), free(score);
    for (int i = 0; i < n_merges; i++) free(merges[i]);
    free(merges);
    cJSON_Delete(root);
    cJSON_Delete(tcfg);
    free(path);
    return rc;
}

/* ---------------- GGUF -> tokenizer.json ---------------- */

typedef struct {
    int id;
    float score;
} scored;

static int scored_cmp(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static cJSON *special_template(const char *bos_text, int bos) {
    cJSON *pp = cJSON_CreateObject();
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single");
    cJSON *st = cJSON_CreateObject(), *sq = cJSON_CreateObject();
    cJSON *sti = cJSON_AddObjectToObject(st, "SpecialToken");
    cJSON_AddStringToObject(sti, "id", bos_text);
    cJSON_AddNumberToObject(sti, "type_id", 0);
    cJSON *sqi = cJSON_AddObjectToObject(sq, "Sequence");
    cJSON_AddStringToObject(sqi, "id", "A");
    cJSON_AddNumberToObject(sqi, "type_id", 0);
    cJSON_AddItemToArray(single, st);
    cJSON_AddItemToArray(single, sq);
    cJSON *sp = cJSON_AddObjectToObject(pp, "special_tokens");
    cJSON *b = cJSON_AddObjectToObject(sp, bos_text);
    cJSON_AddStringToObject(b, "id", bos_text);
    cJSON *ids = cJSON_AddArrayToObject(b, "ids");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(bos));
    cJSON *toks = cJSON_AddArrayToObject(b, "tokens");
    cJSON_AddItemToArray(toks, cJSON_CreateString(bos_text));
    return pp;
}

static cJSON *replace_obj(const char *type, const char *from, const char *to) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON *p = cJSON_AddObjectToObject(o, "pattern");
    cJSON_AddStringToObject(p, "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

char *gguf_vocab_to_hf_json(const gguf_file *g, int *bos_out, int *eos_out, int *add_bos_out) {
    const char *model = NULL, *pre = "default";
    if (gguf_get_str(g, "tokenizer.ggml.model", 1, &model) || gguf_get_str(g, "tokenizer.ggml.pre", 0, &pre)) return NULL;
    int byte_level = strcmp(model, "gpt2") == 0;
    if (!byte_level && strcmp(model, "llama") != 0) {
        gptq_fail("%s: tokenizer.ggml.model \"%s\" is not supported (only \"gpt2\" and \"llama\")", g->path, model);
        return NULL;
    }
    const gguf_kv *toks = gguf_get_arr(g, "tokenizer.ggml.tokens", 1, GGUF_STRING);
    if (!toks) return NULL;
    const gguf_kv *types = gguf_get_arr(g, "tokenizer.ggml.token_type", 0, GGUF_I32);
    if (!types && gguf_find(g, "tokenizer.ggml.token_type")) return NULL;
    if (types && types->n != toks->n) {
        gptq_fail("%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", g->path, (unsigned long long)types->n,
                  (unsigned long long)toks->n);
        return NULL;
    }
    const gguf_kv *scores = NULL, *merges = NULL;
    if (byte_level) {
        if (!(merges = gguf_get_arr(g, "tokenizer.ggml.merges", 1, GGUF_STRING))) return NULL;
    } else {
        if (!(scores = gguf_get_arr(g, "tokenizer.ggml.scores", 1, GGUF_F32))) return NULL;
        if (scores->n != toks->n) {
            gptq_fail("%s: tokenizer.ggml.scores has %llu entries for %llu tokens", g->path, (unsigned long long)scores->n,
                      (unsigned long long)toks->n);
            return NULL;
        }
    }
    uint32_t bos = UINT32_MAX, eos = UINT32_MAX, unk = UINT32_MAX;
    int add_bos = !byte_level;
    if (gguf_get_u32(g, "tokenizer.ggml.bos_token_id", 0, &bos) || gguf_get_u32(g, "tokenizer.ggml.eos_token_id", 0, &eos) ||
        gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", 0, &unk) || gguf_get_bool(g, "tokenizer.ggml.add_bos_token", 0, &add_bos))
        return NULL;
    uint64_t n = toks->n;
    for (uint64_t i = 0; i < n; i++)
        if (strlen(toks->strs[i]) != toks->str_lens[i]) {
            gptq_fail("%s: token %llu holds a NUL byte", g->path, (unsigned long long)i);
            return NULL;
        }
    if (bos != UINT32_MAX && bos >= n) return gptq_fail("%s: BOS id %u is outside the %llu tokens", g->path, bos, (unsigned long long)n), NULL;
    if (eos != UINT32_MAX && eos >= n) return gptq_fail("%s: EOS id %u is outside the %llu tokens", g->path, eos, (unsigned long long)n), NULL;
    if (unk != UINT32_MAX && unk >= n) unk = UINT32_MAX;

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddBoolToObject(m, "byte_fallback", !byte_level);
    cJSON_AddBoolToObject(m, "fuse_unk", !byte_level);
    cJSON_AddBoolToObject(m, "ignore_merges", byte_level && strcmp(pre, "llama-bpe") == 0);
    if (unk != UINT32_MAX) cJSON_AddStringToObject(m, "unk_token", toks->strs[unk]);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
    cJSON *ml = cJSON_AddArrayToObject(m, "merges");
    strmap seen; /* a token listed twice keeps its first id, as llama.cpp's token_to_id map does */
    strmap_init(&seen, (size_t)n * 2 + 16);
    for (uint64_t i = 0; i < n; i++) {
        int ty = types ? (int)gguf_arr_i(types, i) : GGUF_TOK_NORMAL, prev;
        if (!strmap_get(&seen, toks->strs[i], toks->str_lens[i], &prev)) {
            strmap_put(&seen, toks->strs[i], toks->str_lens[i], (int)i);
            cJSON_AddItemToObject(vocab, toks->strs[i], cJSON_CreateNumber((double)i));
        }
        if (ty == GGUF_TOK_CONTROL || ty == GGUF_TOK_USER_DEFINED) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", toks->strs[i]);
            cJSON_AddBoolToObject(a, "normalized", 0);
            cJSON_AddBoolToObject(a, "special", ty == GGUF_TOK_CONTROL);
            cJSON_AddItemToArray(added, a);
        }
    }
    strmap_free(&seen);
    if (byte_level) {
        for (uint64_t i = 0; i < merges->n; i++) cJSON_AddItemToArray(ml, cJSON_CreateString(merges->strs[i]));
        const char *re = strcmp(pre, "gpt-2") == 0 || strcmp(pre, "default") == 0 ? GPT2_REGEX : LLAMA3_REGEX;
        if (strcmp(pre, "gpt-2") && strcmp(pre, "default") && strcmp(pre, "llama-bpe"))
            gptq_warn("%s: pre-tokenizer \"%s\" is not one we know; using the Llama-3 regex", g->path, pre);
        cJSON *pt = cJSON_AddObjectToObject(root, "pre_tokenizer");
        cJSON_AddStringToObject(pt, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(pt, "pretokenizers");
        cJSON *split = cJSON_CreateObject();
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", re);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddBoolToObject(split, "invert", 0);
        cJSON_AddItemToArray(list, split);
        cJSON *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
        cJSON_AddBoolToObject(bl, "trim_offsets", 1);
        cJSON_AddBoolToObject(bl, "use_regex", 0);
        cJSON_AddItemToArray(list, bl);
        cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
        cJSON_AddStringToObject(dec, "type", "ByteLevel");
        cJSON_AddBoolToObject(dec, "add_prefix_space", 1);
        cJSON_AddBoolToObject(dec, "trim_offsets", 1);
        cJSON_AddBoolToObject(dec, "use_regex", 1);
    } else {
        /* merges equivalent to llama.cpp's score-driven merging: every split of every
         * NORMAL token into two tokens, ranked by the token's score */
        scored *order = xmalloc(sizeof(scored) * (size_t)(n + 1));
        size_t k = 0;
        for (uint64_t i = 0; i < n; i++)
            if (!types || gguf_arr_i(types, i) == GGUF_TOK_NORMAL) order[k++] = (scored){(int)i, (float)gguf_arr_f(scores, i)};
        qsort(order, k, sizeof(scored), scored_cmp);
        strmap ids;
        strmap_init(&ids, (size_t)n * 2 + 16);
        for (uint64_t i = 0; i < n; i++) strmap_put(&ids, toks->strs[i], toks->str_lens[i], (int)i);
        for (size_t j = 0; j < k; j++) {
            const char *s = toks->strs[order[j].id];
            size_t len = strlen(s);
            for (size_t cut = 1; cut < len; cut++) {
                int a, b;
                if (((unsigned char)s[cut] & 0xC0) == 0x80) continue;
                if (!strmap_get(&ids, s, cut, &a) || !strmap_get(&ids, s + cut, len - cut, &b)) continue;
                cJSON *pair = cJSON_CreateArray();
                char *left = xmalloc(cut + 1);
                memcpy(left, s, cut);
                left[cut] = 0;
                cJSON_AddItemToArray(pair, cJSON_CreateString(left));
                cJSON_AddItemToArray(pair, cJSON_CreateString(s + cut));
                free(left);
                cJSON_AddItemToArray(ml, pair);
            }
        }
        strmap_free(&ids);
        free(order);
        cJSON *pt = cJSON_AddObjectToObject(root, "pre_tokenizer");
        cJSON_AddStringToObject(pt, "type", "Metaspace");
        cJSON_AddStringToObject(pt, "replacement", SPIECE);
        cJSON_AddStringToObject(pt, "prepend_scheme", "first");
        cJSON_AddBoolToObject(pt, "split", 0);
        cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
        cJSON_AddStringToObject(dec, "type", "Sequence");
        cJSON *dl = cJSON_AddArrayToObject(dec, "decoders");
        cJSON_AddItemToArray(dl, replace_obj("Replace", SPIECE, " "));
        cJSON *bfb = cJSON_CreateObject();
        cJSON_AddStringToObject(bfb, "type", "ByteFallback");
        cJSON_AddItemToArray(dl, bfb);
        cJSON *fuse = cJSON_CreateObject();
        cJSON_AddStringToObject(fuse, "type", "Fuse");
        cJSON_AddItemToArray(dl, fuse);
        cJSON *strip = cJSON_CreateObject();
        cJSON_AddStringToObject(strip, "type", "Strip");
        cJSON_AddStringToObject(strip, "content", " ");
        cJSON_AddNumberToObject(strip, "start", 1);
        cJSON_AddNumberToObject(strip, "stop", 0);
        cJSON_AddItemToArray(dl, strip);
    }
    cJSON_AddItemToObject(root, "model", m);
    if (add_bos && bos != UINT32_MAX) cJSON_AddItemToObject(root, "post_processor", special_template(toks->strs[bos], (int)bos));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    *bos_out = bos == UINT32_MAX ? -1 : (int)bos;
    *eos_out = eos == UINT32_MAX ? -1 : (int)eos;
    *add_bos_out = add_bos && bos != UINT32_MAX;
    return text;
}
