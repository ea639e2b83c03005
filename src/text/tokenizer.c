/* Loading a Hugging Face tokenizer directory and running the encode / decode pipelines
 * (see tokenizer.h).
 *
 * Encoding follows `tokenizers` step by step: added tokens are cut out of the raw text,
 * the remaining pieces are normalized (and normalized added tokens cut out), pre-tokenized
 * into words, and each word goes through BPE (with a per-call word -> ids cache); the
 * post-processor template then adds BOS/EOS.  The stages live in their own files:
 * added_tokens.c, normalize.c, pretokenize.c, bpe.c, decode.c. */
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "text/added_tokens.h"
#include "text/bpe.h"
#include "text/decode.h"
#include "text/normalize.h"
#include "text/pretokenize.h"
#include "text/regex.h"
#include "text/strmap.h"
#include "text/textbuf.h"
#include "text/utf8.h"
#include "io/gguf.h"

struct tokenizer {
    tokenizer_kind kind;
    bpe_model bpe;
    added_vocab added;
    tok_normalizer *norm;
    tok_pretok *pretok;
    tok_decoder *dec;
    int has_template; /* a post-processor says which special tokens to add */
    tok_ids prefix, suffix;
    int add_bos_token, add_eos_token; /* tokenizer_config.json, used without a template */
    int bos_id, cfg_eos_id;
    tok_ids eos;
    int n_ids;
    const char **id_str; /* id -> token string (added tokens first) */
};

/* ---- small JSON helpers ---- */

/* Parses a JSON object from text; NULL + *err = 1 + error naming `path` if it is not one. */
static cJSON *parse_object(const char *text, size_t len, const char *path, int *err) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j) {
        gptq_fail("%s: not valid JSON (near byte %ld)", path, (long)(cJSON_GetErrorPtr() - text));
        *err = 1;
    } else if (!cJSON_IsObject(j)) {
        gptq_fail("%s: not a JSON object", path);
        cJSON_Delete(j);
        j = NULL;
        *err = 1;
    }
    return j;
}

static cJSON *read_json(const char *dir, const char *name, int required, int *err) {
    char *path = fs_join(dir, name);
    *err = 0;
    if (!required && !fs_exists(path)) {
        free(path);
        return NULL;
    }
    size_t len;
    char *text = fs_read_all(path, &len);
    if (!text) {
        *err = 1;
        free(path);
        return NULL;
    }
    cJSON *j = parse_object(text, len, path, err);
    free(text);
    free(path);
    return j;
}

static const cJSON *field(const cJSON *o, const char *key) {
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static int bool_field(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = field(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* A special token named in tokenizer_config.json: a string or an AddedToken object. */
static const char *token_content(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = field(v, "content");
    return cJSON_IsObject(v) && cJSON_IsString(c) ? c->valuestring : NULL;
}

/* ---- ids ---- */

static int token_to_id(const tokenizer *t, const char *s) {
    const added_token *a = added_find(&t->added, s);
    if (a) return a->id;
    return bpe_token_id(&t->bpe, s, strlen(s));
}

/* Adds a token the way AddedVocabulary::add_tokens picks its id: the id it already has as
 * an added token or in the model vocabulary, else the next id past both. */
static void add_token(tokenizer *t, added_token tok) {
    if (!tok.content || !tok.content[0]) return;
    int id = token_to_id(t, tok.content);
    if (id < 0) {
        int max = -1;
        for (int i = 0; i < t->added.n; i++)
            if (t->added.v[i].id > max) max = t->added.v[i].id;
        int vs = t->bpe.vocab_count;
        id = max < 0 ? vs : (max >= vs || vs == 0 ? max + 1 : vs);
    }
    tok.id = id;
    added_add(&t->added, &tok);
}

static added_token token_from_json(const cJSON *e, int special_default, int normalized_default) {
    added_token tok = {0};
    tok.content = (char *)token_content(e);
    tok.special = bool_field(e, "special", special_default);
    tok.normalized = bool_field(e, "normalized", normalized_default);
    tok.single_word = bool_field(e, "single_word", 0);
    tok.lstrip = bool_field(e, "lstrip", 0);
    tok.rstrip = bool_field(e, "rstrip", 0);
    return tok;
}

/* ---- post-processor ---- */

static int template_from(tokenizer *t, const cJSON *pp, const char *path) {
    if (!pp || cJSON_IsNull(pp)) return 0;
    const cJSON *type = field(pp, "type");
    if (!cJSON_IsString(type)) return gptq_fail("%s: post_processor without a \"type\"", path);
    const char *ty = type->valuestring;
    if (strcmp(ty, "ByteLevel") == 0) return 0;
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = field(pp, "processors");
        if (!cJSON_IsArray(list)) return gptq_fail("%s: malformed Sequence post_processor", path);
        for (const cJSON *e = list->child; e; e = e->next)
            if (template_from(t, e, path)) return -1;
        return 0;
    }
    if (strcmp(ty, "BertProcessing") == 0 || strcmp(ty, "RobertaProcessing") == 0) {
        const cJSON *cls = field(pp, "cls"), *sep = field(pp, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || !cJSON_IsNumber(cJSON_GetArrayItem(cls, 1)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(sep, 1)))
            return gptq_fail("%s: malformed %s post_processor", path, ty);
        t->has_template = 1;
        t->prefix.n = t->suffix.n = 0;
        ids_push(&t->prefix, cJSON_GetArrayItem(cls, 1)->valueint);
        ids_push(&t->suffix, cJSON_GetArrayItem(sep, 1)->valueint);
        return 0;
    }
    if (strcmp(ty, "TemplateProcessing") != 0) return gptq_fail("%s: unsupported post_processor type \"%s\"", path, ty);
    const cJSON *single = field(pp, "single"), *specials = field(pp, "special_tokens");
    if (!cJSON_IsArray(single)) return gptq_fail("%s: TemplateProcessing without a \"single\" template", path);
    t->has_template = 1;
    t->prefix.n = t->suffix.n = 0;
    int seen_a = 0;
    for (const cJSON *e = single->child; e; e = e->next) {
        const cJSON *sp = field(e, "SpecialToken");
        if (field(e, "Sequence")) {
            seen_a = 1;
            continue;
        }
        const cJSON *name = field(sp, "id");
        if (!cJSON_IsString(name)) return gptq_fail("%s: malformed TemplateProcessing item", path);
        const cJSON *ids = field(field(specials, name->valuestring), "ids");
        char esc[96];
        if (!cJSON_IsArray(ids))
            return gptq_fail("%s: TemplateProcessing uses \"%s\", which is not in its special_tokens", path,
                             str_escape(name->valuestring, esc, sizeof esc));
        for (const cJSON *id = ids->child; id; id = id->next) {
            if (!cJSON_IsNumber(id) || id->valueint < 0)
                return gptq_fail("%s: TemplateProcessing special token \"%s\" has a bad id", path,
                                 str_escape(name->valuestring, esc, sizeof esc));
            ids_push(seen_a ? &t->suffix : &t->prefix, id->valueint);
        }
    }
    return 0;
}

/* ---- loading ---- */

static void add_ids_from(tok_ids *eos, const cJSON *v) {
    if (cJSON_IsNumber(v)) ids_push(eos, v->valueint);
    if (cJSON_IsArray(v))
        for (const cJSON *e = v->child; e; e = e->next)
            if (cJSON_IsNumber(e)) ids_push(eos, e->valueint);
}

static int is_llama_class(const cJSON *tcfg) {
    const cJSON *cls = field(tcfg, "tokenizer_class");
    if (!cJSON_IsString(cls)) return 0;
    return strcmp(cls->valuestring, "LlamaTokenizer") == 0 || strcmp(cls->valuestring, "LlamaTokenizerFast") == 0;
}

static int load_parts(tokenizer *t, const char *path, const cJSON *root, const char *text, const cJSON *tcfg, int raw) {
    const cJSON *model = field(root, "model");
    if (!cJSON_IsObject(model)) return gptq_fail("%s: no \"model\" object", path);
    const cJSON *type = field(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return gptq_fail("%s: unsupported model type \"%s\" (only BPE is supported)", path, type->valuestring);
    if (!cJSON_IsString(type) && !field(model, "merges"))
        return gptq_fail("%s: model has no \"type\" and no merges (only BPE is supported)", path);
    if (bpe_load(&t->bpe, model, path)) return -1;

    /* transformers 5 rebuilds LlamaTokenizer(Fast) tokenizers from vocab + merges */
    int llama = !raw && is_llama_class(tcfg) && !strstr(text, "\"ByteLevel\"");
    if (llama) {
        int prefix_space = bool_field(tcfg, "add_prefix_space", 1);
        int legacy = bool_field(tcfg, "legacy", 0);
        prepend_scheme ps = !prefix_space ? PREPEND_NEVER : legacy ? PREPEND_ALWAYS : PREPEND_FIRST;
        t->bpe.unk_id = -1;
        t->bpe.byte_fallback = 1;
        t->bpe.fuse_unk = 1;
        t->bpe.ignore_merges = 0;
        free(t->bpe.prefix);
        free(t->bpe.suffix);
        t->bpe.prefix = t->bpe.suffix = NULL;
        t->pretok = pretok_metaspace("\xE2\x96\x81", ps, 0);
        t->dec = decoder_llama(prefix_space);
    } else {
        if (normalizer_parse(field(root, "normalizer"), path, &t->norm)) return -1;
        if (pretok_parse(field(root, "pre_tokenizer"), path, &t->pretok)) return -1;
        if (decoder_parse(field(root, "decoder"), path, &t->dec)) return -1;
    }

    /* added tokens, in file order; their "id" fields are not used, as in `tokenizers` */
    const cJSON *added = field(root, "added_tokens");
    if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        return gptq_fail("%s: added_tokens is not an array", path);
    if (cJSON_IsArray(added))
        for (const cJSON *e = added->child; e; e = e->next) {
            if (!token_content(e)) return gptq_fail("%s: an added token has no \"content\"", path);
            add_token(t, token_from_json(e, 0, 1));
        }

    if (!raw && tcfg) {
        /* TokenizersBackend.__init__ and _post_init: tokens of added_tokens_decoder that are
         * missing, then the named and extra special tokens (special, not normalized) */
        const cJSON *atd = field(tcfg, "added_tokens_decoder");
        if (cJSON_IsObject(atd)) {
            int n = cJSON_GetArraySize(atd);
            const cJSON **sorted = xcalloc((size_t)n + 1, sizeof *sorted);
            int k = 0;
            for (const cJSON *e = atd->child; e; e = e->next) sorted[k++] = e;
            for (int i = 1; i < k; i++) /* by numeric key */
                for (int j = i; j > 0 && atol(sorted[j - 1]->string) > atol(sorted[j]->string); j--) {
                    const cJSON *x = sorted[j];
                    sorted[j] = sorted[j - 1];
                    sorted[j - 1] = x;
                }
            for (int i = 0; i < k; i++) {
                const char *c = token_content(sorted[i]);
                if (c && !added_find(&t->added, c)) add_token(t, token_from_json(sorted[i], 0, 1));
            }
            free(sorted);
        }
        static const char *named[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                      "pad_token", "cls_token", "mask_token"};
        static const char *llama_default[] = {"<s>", "</s>", "<unk>", NULL, NULL, NULL, NULL};
        for (int i = 0; i < 7; i++) {
            const cJSON *v = field(tcfg, named[i]);
            if (token_content(v)) {
                add_token(t, token_from_json(v, 1, 0));
            } else if (llama && llama_default[i] && !field(tcfg, named[i])) {
                add_token(t, (added_token){.content = (char *)llama_default[i], .special = 1});
            }
        }
        const cJSON *extra = field(tcfg, "extra_special_tokens");
        if (!cJSON_IsArray(extra)) extra = field(tcfg, "additional_special_tokens");
        if (cJSON_IsArray(extra))
            for (const cJSON *e = extra->child; e; e = e->next)
                if (token_content(e)) add_token(t, token_from_json(e, 1, 0));
    }
    added_build(&t->added, t->norm);

    if (template_from(t, field(root, "post_processor"), path)) return -1;
    return 0;
}

static void build_id_table(tokenizer *t) {
    t->n_ids = t->bpe.n_ids;
    for (int i = 0; i < t->added.n; i++)
        if (t->added.v[i].id + 1 > t->n_ids) t->n_ids = t->added.v[i].id + 1;
    t->id_str = xcalloc((size_t)t->n_ids + 1, sizeof *t->id_str);
    for (int i = 0; i < t->bpe.n_ids; i++) t->id_str[i] = t->bpe.id_tok[i];
    for (int i = 0; i < t->added.n; i++) t->id_str[t->added.v[i].id] = t->added.v[i].content;
}

/* Builds the tokenizer from tokenizer.json (`root`, parsed from the NUL-terminated `text`,
 * named `path` in errors) and the optional tokenizer_config / config / generation_config
 * objects; frees all four objects. */
static tokenizer *build(const char *path, const char *text, cJSON *root, cJSON *tcfg, cJSON *cfg, cJSON *gen, int flags) {
    int raw = (flags & TOKENIZER_LOAD_RAW) != 0;
    tokenizer *t = xcalloc(1, sizeof *t);
    t->bos_id = t->cfg_eos_id = -1;
    if (load_parts(t, path, root, text, tcfg, raw)) goto fail;
    build_id_table(t);
    t->kind = pretok_has_byte_level(t->pretok) ? TOK_BYTE_LEVEL_BPE : TOK_SENTENCEPIECE_BPE;

    /* BOS: the template's first special token, else tokenizer_config, else config.json */
    const char *bos_name = token_content(field(tcfg, "bos_token"));
    if (t->has_template && t->prefix.n)
        t->bos_id = t->prefix.v[0];
    else if (bos_name && token_to_id(t, bos_name) >= 0)
        t->bos_id = token_to_id(t, bos_name);
    else if (cJSON_IsNumber(field(cfg, "bos_token_id")))
        t->bos_id = field(cfg, "bos_token_id")->valueint;
    t->add_bos_token = bool_field(tcfg, "add_bos_token", 0);
    t->add_eos_token = bool_field(tcfg, "add_eos_token", 0);
    /* EOS: every id named by config.json, generation_config.json, tokenizer_config.json */
    add_ids_from(&t->eos, field(cfg, "eos_token_id"));
    add_ids_from(&t->eos, field(gen, "eos_token_id"));
    const char *eos_name = token_content(field(tcfg, "eos_token"));
    if (eos_name && token_to_id(t, eos_name) >= 0) {
        t->cfg_eos_id = token_to_id(t, eos_name);
        ids_push(&t->eos, t->cfg_eos_id);
    } else if (t->eos.n) {
        t->cfg_eos_id = t->eos.v[0];
    }
    for (size_t i = 0; i < t->prefix.n; i++)
        if (t->prefix.v[i] < 0 || t->prefix.v[i] >= t->n_ids || !t->id_str[t->prefix.v[i]]) {
            gptq_fail("%s: post_processor adds id %d, which no token of the vocabulary has", path, t->prefix.v[i]);
            goto fail;
        }
    for (size_t i = 0; i < t->suffix.n; i++)
        if (t->suffix.v[i] < 0 || t->suffix.v[i] >= t->n_ids || !t->id_str[t->suffix.v[i]]) {
            gptq_fail("%s: post_processor adds id %d, which no token of the vocabulary has", path, t->suffix.v[i]);
            goto fail;
        }
    cJSON_Delete(root);
    cJSON_Delete(tcfg);
    cJSON_Delete(cfg);
    cJSON_Delete(gen);
    return t;
fail:
    cJSON_Delete(root);
    cJSON_Delete(tcfg);
    cJSON_Delete(cfg);
    cJSON_Delete(gen);
    tokenizer_free(t);
    return NULL;
}

tokenizer *tokenizer_load_ex(const char *dir, int flags) {
    if (gguf_is_gguf(dir)) return tokenizer_load_gguf(dir);
    int err;
    char *path = fs_join(dir, "tokenizer.json");
    cJSON *root = NULL, *tcfg = NULL, *cfg = NULL, *gen = NULL;
    tokenizer *t = NULL;
    size_t len;
    char *text = fs_read_all(path, &len);
    if (!text) goto done;
    err = 0;
    root = parse_object(text, len, path, &err);
    if (!root) goto done;
    tcfg = read_json(dir, "tokenizer_config.json", 0, &err);
    if (err) goto done;
    cfg = read_json(dir, "config.json", 0, &err);
    if (err) goto done;
    gen = read_json(dir, "generation_config.json", 0, &err);
    if (err) goto done;
    t = build(path, text, root, tcfg, cfg, gen, flags);
    root = tcfg = cfg = gen = NULL; /* build freed them */
done:
    cJSON_Delete(root);
    cJSON_Delete(tcfg);
    cJSON_Delete(cfg);
    cJSON_Delete(gen);
    free(text);
    free(path);
    return t;
}

tokenizer *tokenizer_from_json(const char *json, size_t len, const char *tokenizer_config, size_t tcfg_len,
                               const char *what, int flags) {
    int err = 0;
    char *text = xmalloc(len + 1); /* load_parts looks for "ByteLevel" in the text */
    memcpy(text, json, len);
    text[len] = 0;
    cJSON *root = parse_object(text, len, what, &err), *tcfg = NULL;
    if (root && tokenizer_config) {
        char *name = xmalloc(strlen(what) + 32);
        sprintf(name, "%s (tokenizer_config)", what);
        tcfg = parse_object(tokenizer_config, tcfg_len, name, &err);
        free(name);
    }
    tokenizer *t = NULL;
    if (!err) t = build(what, text, root, tcfg, NULL, NULL, flags);
    else cJSON_Delete(root), cJSON_Delete(tcfg);
    free(text);
    return t;
}

tokenizer *tokenizer_load_json(const char *label, const char *json, size_t len, int bos_id, int eos_id) {
    int err = 0;
    char *text = xmalloc(len + 1);
    memcpy(text, json, len);
    text[len] = 0;
    cJSON *root = parse_object(text, len, label, &err);
    tokenizer *t = NULL;
    if (root) {
        cJSON *cfg = cJSON_CreateObject();
        if (bos_id >= 0) cJSON_AddNumberToObject(cfg, "bos_token_id", bos_id);
        if (eos_id >= 0) cJSON_AddNumberToObject(cfg, "eos_token_id", eos_id);
        t = build(label, text, root, NULL, cfg, NULL, TOKENIZER_LOAD_RAW);
    }
    free(text);
    return t;
}

tokenizer *tokenizer_load(const char *dir) { return tokenizer_load_ex(dir, 0); }

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    bpe_free(&t->bpe);
    added_free(&t->added);
    normalizer_free(t->norm);
    pretok_free(t->pretok);
    decoder_free(t->dec);
    ids_free(&t->prefix);
    ids_free(&t->suffix);
    ids_free(&t->eos);
    free(t->id_str);
    free(t);
}

/* ---- encoding ---- */

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int **ids_out) {
    *ids_out = NULL;
    if (!text && len) return gptq_fail("tokenizer_encode: NULL text");
    tok_pieces a = {0}, b = {0};
    tok_buf tmp = {0};
    tok_ids out = {0};
    pieces_push(&a, text ? text : "", len, -1, 1);
    added_split(&t->added, 0, NULL, &a, &b, &tmp); /* raw added tokens */
    pieces_clear(&a);
    added_split(&t->added, 1, t->norm, &b, &a, &tmp); /* normalize, normalized added tokens */
    tok_regex_scratch *rs = regex_scratch_new();
    pretok_apply(t->pretok, &a, &b, rs);
    regex_scratch_free(rs);
    pieces_free(&a);
    buf_free(&tmp);

    int special = add_bos && (t->has_template || t->add_bos_token || t->add_eos_token);
    if (special) {
        if (t->has_template)
            ids_append(&out, t->prefix.v, t->prefix.n);
        else if (t->add_bos_token && t->bos_id >= 0)
            ids_push(&out, t->bos_id);
    }
    /* words -> ids through a per-call cache: word -> (offset, count) in `pool` */
    strmap cache;
    strmap_init(&cache, 1024);
    tok_ids pool = {0}, where = {0};
    bpe_scratch bs = {0};
    for (size_t i = 0; i < b.count; i++) {
        const tok_piece *p = &b.v[i];
        if (p->id >= 0) {
            ids_push(&out, p->id);
            continue;
        }
        const char *w = piece_str(&b, i);
        int k;
        if (strmap_get(&cache, w, p->n, &k)) {
            ids_append(&out, pool.v + where.v[2 * k], (size_t)where.v[2 * k + 1]);
            continue;
        }
        size_t before = pool.n;
        bpe_word(&t->bpe, w, p->n, &bs, &pool);
        ids_append(&out, pool.v + before, pool.n - before);
        if (cache.count < (1u << 20)) {
            strmap_put(&cache, w, p->n, (int)(where.n / 2));
            ids_push(&where, (int)before);
            ids_push(&where, (int)(pool.n - before));
        } else {
            pool.n = before;
        }
    }
    strmap_free(&cache);
    ids_free(&pool);
    ids_free(&where);
    bpe_scratch_free(&bs);
    pieces_free(&b);
    if (special) {
        if (t->has_template)
            ids_append(&out, t->suffix.v, t->suffix.n);
        else if (t->add_eos_token && t->cfg_eos_id >= 0)
            ids_push(&out, t->cfg_eos_id);
    }
    if (out.n > 0x7fffffff) {
        ids_free(&out);
        return gptq_fail("tokenizer_encode: more than 2^31 tokens");
    }
    if (!out.v) out.v = xmalloc(sizeof(int));
    *ids_out = out.v;
    return (int)out.n;
}

/* ---- decoding ---- */

char *tokenizer_decode(const tokenizer *t, const int *ids, int n) {
    size_t len;
    return tokenizer_decode_n(t, ids, n, &len);
}

char *tokenizer_decode_n(const tokenizer *t, const int *ids, int n, size_t *len_out) {
    *len_out = 0;
    if (n < 0 || (n > 0 && !ids)) {
        gptq_fail("tokenizer_decode: bad id list");
        return NULL;
    }
    tok_buf *toks = xcalloc((size_t)n + 1, sizeof *toks);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->id_str[ids[i]]) {
            gptq_fail("tokenizer_decode: token id %d is not in the vocabulary (%d ids)", ids[i], t->n_ids);
            for (int k = 0; k < i; k++) buf_free(&toks[k]);
            free(toks);
            return NULL;
        }
        buf_append(&toks[i], t->id_str[ids[i]], strlen(t->id_str[ids[i]]));
    }
    int m = n;
    tok_buf out = {0};
    decoder_run(t->dec, toks, &m, &out);
    for (int i = 0; i < m; i++) buf_free(&toks[i]);
    free(toks);
    if (!out.p) buf_append(&out, "", 0);
    *len_out = out.n;
    return out.p;
}

int tokenizer_vocab_size(const tokenizer *t) { return t->n_ids; }
int tokenizer_model_vocab_size(const tokenizer *t) { return t->bpe.vocab_count; }
tokenizer_kind tokenizer_get_kind(const tokenizer *t) { return t->kind; }
const char *tokenizer_kind_name(const tokenizer *t) {
    return t->kind == TOK_BYTE_LEVEL_BPE ? "byte-level BPE" : "SentencePiece BPE";
}
int tokenizer_bos(const tokenizer *t) { return t->bos_id; }

int tokenizer_is_eos(const tokenizer *t, int id) {
    for (size_t i = 0; i < t->eos.n; i++)
        if (t->eos.v[i] == id) return 1;
    return 0;
}

const char *tokenizer_token(const tokenizer *t, int id) { return id >= 0 && id < t->n_ids ? t->id_str[id] : NULL; }
