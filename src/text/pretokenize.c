/* Pre-tokenizers of tokenizer.json (see pretokenize.h). */
#include "text/pretokenize.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/byte_level.h"
#include "text/utf8.h"

typedef enum { PT_SEQUENCE, PT_SPLIT, PT_BYTE_LEVEL, PT_METASPACE } pt_type;
typedef enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS } split_behavior;

struct tok_pretok {
    pt_type type;
    tok_pretok **kids; /* Sequence */
    int n_kids;
    tok_regex *re; /* Split; ByteLevel with use_regex; Metaspace split on the replacement */
    split_behavior behavior;
    int invert;
    int add_prefix_space; /* ByteLevel */
    char *replacement;    /* Metaspace */
    prepend_scheme scheme;
    char map[256][3]; /* ByteLevel: UTF-8 of each byte's character, NUL-terminated */
};

/* The GPT-2 pre-tokenizer regex that ByteLevel uses when use_regex is true. */
static const char GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

void pretok_free(tok_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n_kids; i++) pretok_free(p->kids[i]);
    free(p->kids);
    regex_free(p->re);
    free(p->replacement);
    free(p);
}

static const char *str_field(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int bool_field(const cJSON *j, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static void init_byte_map(tok_pretok *p) {
    for (int b = 0; b < 256; b++) {
        int n = utf8_put(byte_level_char((unsigned char)b), p->map[b]);
        p->map[b][n] = 0;
    }
}

tok_pretok *pretok_metaspace(const char *replacement, prepend_scheme scheme, int split) {
    tok_pretok *p = xcalloc(1, sizeof *p);
    p->type = PT_METASPACE;
    p->replacement = xstrdup(replacement);
    p->scheme = scheme;
    if (split) {
        p->re = regex_literal(replacement, strlen(replacement), "Metaspace");
        p->behavior = B_MERGED_NEXT;
    }
    return p;
}

int pretok_parse(const cJSON *j, const char *path, tok_pretok **out) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return 0;
    const char *type = str_field(j, "type");
    if (!type) return gptq_fail("%s: pre_tokenizer without a \"type\"", path);
    tok_pretok *p = xcalloc(1, sizeof *p);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(list)) goto bad;
        p->type = PT_SEQUENCE;
        p->kids = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *p->kids);
        for (const cJSON *e = list->child; e; e = e->next) {
            if (pretok_parse(e, path, &p->kids[p->n_kids])) goto fail;
            if (p->kids[p->n_kids]) p->n_kids++;
        }
    } else if (strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *behavior = str_field(j, "behavior");
        const char *rx = str_field(pat, "Regex"), *lit = str_field(pat, "String");
        if ((!rx && !lit) || !behavior) goto bad;
        p->type = PT_SPLIT;
        p->re = rx ? regex_compile(rx, path) : regex_literal(lit, strlen(lit), path);
        if (!p->re) goto fail;
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int k = 0;
        while (k < 5 && strcmp(behavior, names[k]) != 0) k++;
        if (k == 5) {
            gptq_fail("%s: unknown Split behavior \"%s\"", path, behavior);
            goto fail;
        }
        p->behavior = (split_behavior)k;
        p->invert = bool_field(j, "invert", 0);
    } else if (strcmp(type, "ByteLevel") == 0) {
        p->type = PT_BYTE_LEVEL;
        p->add_prefix_space = bool_field(j, "add_prefix_space", 1);
        if (bool_field(j, "use_regex", 1)) {
            p->re = regex_compile(GPT2_REGEX, path);
            if (!p->re) goto fail;
            p->behavior = B_ISOLATED;
        }
        init_byte_map(p);
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *rep = str_field(j, "replacement");
        if (!rep || !rep[0] || (size_t)utf8_len(rep, strlen(rep)) != strlen(rep)) goto bad;
        const char *scheme = str_field(j, "prepend_scheme");
        prepend_scheme ps;
        if (!scheme)
            ps = bool_field(j, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        else if (strcmp(scheme, "always") == 0)
            ps = PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0)
            ps = PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0)
            ps = PREPEND_NEVER;
        else
            goto bad;
        free(p);
        *out = pretok_metaspace(rep, ps, bool_field(j, "split", 1));
        return 0;
    } else if (strcmp(type, "Digits") == 0) {
        p->type = PT_SPLIT;
        p->re = regex_compile("\\p{N}", path);
        p->behavior = bool_field(j, "individual_digits", 0) ? B_ISOLATED : B_CONTIGUOUS;
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        p->type = PT_SPLIT;
        p->re = regex_compile("\\s", path);
        p->behavior = B_REMOVED;
    } else {
        gptq_fail("%s: unsupported pre_tokenizer type \"%s\"", path, type);
        goto fail;
    }
    *out = p;
    return 0;
bad:
    gptq_fail("%s: malformed %s pre_tokenizer", path, type);
fail:
    pretok_free(p);
    return -1;
}

int pretok_has_byte_level(const tok_pretok *p) {
    if (!p) return 0;
    if (p->type == PT_BYTE_LEVEL) return 1;
    for (int i = 0; i < p->n_kids; i++)
        if (pretok_has_byte_level(p->kids[i])) return 1;
    return 0;
}

/* ---- splitting one piece by a pattern, as NormalizedString::split ---- */

typedef struct {
    size_t a, b;
    int match;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} spans;

static void span_push(spans *s, size_t a, size_t b, int match) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = (span){a, b, match};
}

static void split_piece(const tok_pretok *p, const char *s, size_t n, int at_start, tok_pieces *out,
                        tok_regex_scratch *rs, spans *sp, spans *res) {
    sp->n = res->n = 0;
    /* find_matches: the whole piece as matched / unmatched spans */
    size_t pos = 0, last = (size_t)-1, ms, me, prev = 0;
    while (regex_next(p->re, s, n, &pos, &last, &ms, &me, rs)) {
        if (prev != ms) span_push(sp, prev, ms, 0);
        span_push(sp, ms, me, 1);
        prev = me;
    }
    if (prev != n) span_push(sp, prev, n, 0);
    if (p->invert)
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = !sp->v[i].match;
    /* behavior; in res, match = 1 means "remove" */
    int prev_match = 0;
    switch (p->behavior) {
    case B_REMOVED:
        for (size_t i = 0; i < sp->n; i++) span_push(res, sp->v[i].a, sp->v[i].b, sp->v[i].match);
        break;
    case B_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) span_push(res, sp->v[i].a, sp->v[i].b, 0);
        break;
    case B_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            if (sp->v[i].match && !prev_match && res->n)
                res->v[res->n - 1].b = sp->v[i].b;
            else
                span_push(res, sp->v[i].a, sp->v[i].b, 0);
            prev_match = sp->v[i].match;
        }
        break;
    case B_MERGED_NEXT:
        for (size_t i = sp->n; i-- > 0;) {
            if (sp->v[i].match && !prev_match && res->n)
                res->v[res->n - 1].a = sp->v[i].a;
            else
                span_push(res, sp->v[i].a, sp->v[i].b, 0);
            prev_match = sp->v[i].match;
        }
        for (size_t i = 0, j = res->n ? res->n - 1 : 0; i < j; i++, j--) {
            span t = res->v[i];
            res->v[i] = res->v[j];
            res->v[j] = t;
        }
        break;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            if (sp->v[i].match == prev_match && res->n)
                res->v[res->n - 1].b = sp->v[i].b;
            else
                span_push(res, sp->v[i].a, sp->v[i].b, 0);
            prev_match = sp->v[i].match;
        }
        break;
    }
    for (size_t i = 0; i < res->n; i++)
        if (!res->v[i].match && res->v[i].b > res->v[i].a)
            pieces_push(out, s + res->v[i].a, res->v[i].b - res->v[i].a, -1, at_start && res->v[i].a == 0);
}

static void apply_split(const tok_pretok *p, const tok_pieces *in, tok_pieces *out, tok_regex_scratch *rs) {
    spans sp = {0}, res = {0};
    for (size_t i = 0; i < in->count; i++) {
        const tok_piece *pc = &in->v[i];
        if (pc->id >= 0)
            pieces_push(out, piece_str(in, i), pc->n, pc->id, pc->at_start);
        else
            split_piece(p, piece_str(in, i), pc->n, pc->at_start, out, rs, &sp, &res);
    }
    free(sp.v);
    free(res.v);
}

static void apply_byte_level(const tok_pretok *p, const tok_pieces *in, tok_pieces *out, tok_regex_scratch *rs) {
    tok_pieces a = {0}, b = {0};
    const tok_pieces *cur = in;
    if (p->add_prefix_space) {
        for (size_t i = 0; i < in->count; i++) {
            const tok_piece *pc = &in->v[i];
            size_t start = pieces_begin(&a);
            if (pc->id < 0 && (pc->n == 0 || piece_str(in, i)[0] != ' ')) buf_putc(&a.text, ' ');
            buf_append(&a.text, piece_str(in, i), pc->n);
            pieces_end(&a, start, pc->id, pc->at_start);
        }
        cur = &a;
    }
    if (p->re) {
        apply_split(p, cur, &b, rs);
        cur = &b;
    }
    for (size_t i = 0; i < cur->count; i++) {
        const tok_piece *pc = &cur->v[i];
        const unsigned char *s = (const unsigned char *)piece_str(cur, i);
        if (pc->id >= 0) {
            pieces_push(out, (const char *)s, pc->n, pc->id, pc->at_start);
            continue;
        }
        size_t start = pieces_begin(out);
        buf_reserve(&out->text, 2 * pc->n);
        for (size_t k = 0; k < pc->n; k++) {
            const char *m = p->map[s[k]];
            out->text.p[out->text.n++] = m[0];
            if (m[1]) out->text.p[out->text.n++] = m[1];
        }
        out->text.p[out->text.n] = 0;
        pieces_end(out, start, -1, pc->at_start);
    }
    pieces_free(&a);
    pieces_free(&b);
}

static void apply_metaspace(const tok_pretok *p, const tok_pieces *in, tok_pieces *out, tok_regex_scratch *rs) {
    tok_pieces a = {0};
    tok_pieces *dst = p->re ? &a : out;
    size_t rl = strlen(p->replacement);
    for (size_t i = 0; i < in->count; i++) {
        const tok_piece *pc = &in->v[i];
        const char *s = piece_str(in, i);
        if (pc->id >= 0) {
            pieces_push(dst, s, pc->n, pc->id, pc->at_start);
            continue;
        }
        size_t start = pieces_begin(dst);
        /* prepend unless the (space-replaced) piece already starts with the replacement */
        int starts = (pc->n > 0 && s[0] == ' ') || (pc->n >= rl && memcmp(s, p->replacement, rl) == 0);
        if (!starts && (p->scheme == PREPEND_ALWAYS || (p->scheme == PREPEND_FIRST && pc->at_start)))
            buf_append(&dst->text, p->replacement, rl);
        for (size_t k = 0; k < pc->n; k++) {
            if (s[k] == ' ')
                buf_append(&dst->text, p->replacement, rl);
            else
                buf_putc(&dst->text, s[k]);
        }
        pieces_end(dst, start, -1, pc->at_start);
    }
    if (p->re) apply_split(p, &a, out, rs);
    pieces_free(&a);
}

static void apply(const tok_pretok *p, const tok_pieces *in, tok_pieces *out, tok_regex_scratch *rs) {
    switch (p->type) {
    case PT_SEQUENCE: {
        tok_pieces bufs[2];
        memset(bufs, 0, sizeof bufs);
        const tok_pieces *cur = in;
        for (int i = 0; i < p->n_kids; i++) {
            tok_pieces *dst = i == p->n_kids - 1 ? out : &bufs[i & 1];
            pieces_clear(dst);
            apply(p->kids[i], cur, dst, rs);
            cur = dst;
        }
        if (p->n_kids == 0)
            for (size_t i = 0; i < in->count; i++)
                pieces_push(out, piece_str(in, i), in->v[i].n, in->v[i].id, in->v[i].at_start);
        pieces_free(&bufs[0]);
        pieces_free(&bufs[1]);
        return;
    }
    case PT_SPLIT:
        apply_split(p, in, out, rs);
        return;
    case PT_BYTE_LEVEL:
        apply_byte_level(p, in, out, rs);
        return;
    case PT_METASPACE:
        apply_metaspace(p, in, out, rs);
        return;
    }
}

void pretok_apply(const tok_pretok *p, const tok_pieces *in, tok_pieces *out, tok_regex_scratch *rs) {
    pieces_clear(out);
    if (!p) {
        for (size_t i = 0; i < in->count; i++)
            if (in->v[i].n) pieces_push(out, piece_str(in, i), in->v[i].n, in->v[i].id, in->v[i].at_start);
        return;
    }
    apply(p, in, out, rs);
}
