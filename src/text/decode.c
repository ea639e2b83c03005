/* Decoders of tokenizer.json (see decode.h). */
#include "text/decode.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/byte_level.h"
#include "text/utf8.h"

typedef enum { D_SEQUENCE, D_BYTE_LEVEL, D_REPLACE, D_BYTE_FALLBACK, D_FUSE, D_STRIP, D_METASPACE } dec_type;

struct tok_decoder {
    dec_type type;
    tok_decoder **kids;
    int n_kids;
    char *a, *b;     /* Replace: a -> b; Strip: a = content; Metaspace: a = replacement */
    int start, stop; /* Strip */
    int prepend;     /* Metaspace: prepend scheme is not "never" */
};

void decoder_free(tok_decoder *d) {
    if (!d) return;
    for (int i = 0; i < d->n_kids; i++) decoder_free(d->kids[i]);
    free(d->kids);
    free(d->a);
    free(d->b);
    free(d);
}

static const char *str_field(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int single_char(const char *s) { return s && s[0] && (size_t)utf8_len(s, strlen(s)) == strlen(s); }

int decoder_parse(const cJSON *j, const char *path, tok_decoder **out) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return 0;
    const char *type = str_field(j, "type");
    if (!type) return gptq_fail("%s: decoder without a \"type\"", path);
    tok_decoder *d = xcalloc(1, sizeof *d);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(list)) goto bad;
        d->type = D_SEQUENCE;
        d->kids = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *d->kids);
        for (const cJSON *e = list->child; e; e = e->next) {
            if (decoder_parse(e, path, &d->kids[d->n_kids])) goto fail;
            if (d->kids[d->n_kids]) d->n_kids++;
        }
    } else if (strcmp(type, "ByteLevel") == 0) {
        d->type = D_BYTE_LEVEL;
    } else if (strcmp(type, "Replace") == 0) {
        const char *s = str_field(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "String");
        const char *content = str_field(j, "content");
        if (!content) goto bad;
        if (!s) {
            gptq_fail("%s: decoder Replace with a regex pattern is not supported", path);
            goto fail;
        }
        d->type = D_REPLACE;
        d->a = xstrdup(s);
        d->b = xstrdup(content);
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->type = D_BYTE_FALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->type = D_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        const char *c = str_field(j, "content");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "stop");
        if (!single_char(c) || !cJSON_IsNumber(st) || !cJSON_IsNumber(sp)) goto bad;
        d->type = D_STRIP;
        d->a = xstrdup(c);
        d->start = st->valueint;
        d->stop = sp->valueint;
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *rep = str_field(j, "replacement");
        if (!single_char(rep)) goto bad;
        d->type = D_METASPACE;
        d->a = xstrdup(rep);
        const char *scheme = str_field(j, "prepend_scheme");
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space");
        d->prepend = scheme ? strcmp(scheme, "never") != 0 : !cJSON_IsFalse(aps);
    } else {
        gptq_fail("%s: unsupported decoder type \"%s\"", path, type);
        goto fail;
    }
    *out = d;
    return 0;
bad:
    gptq_fail("%s: malformed %s decoder", path, type);
fail:
    decoder_free(d);
    return -1;
}

tok_decoder *decoder_llama(int strip) {
    tok_decoder *d = xcalloc(1, sizeof *d);
    d->type = D_SEQUENCE;
    d->kids = xcalloc(4, sizeof *d->kids);
    tok_decoder *r = xcalloc(1, sizeof *r);
    r->type = D_REPLACE;
    r->a = xstrdup("\xE2\x96\x81");
    r->b = xstrdup(" ");
    d->kids[d->n_kids++] = r;
    tok_decoder *bf = xcalloc(1, sizeof *bf);
    bf->type = D_BYTE_FALLBACK;
    d->kids[d->n_kids++] = bf;
    tok_decoder *f = xcalloc(1, sizeof *f);
    f->type = D_FUSE;
    d->kids[d->n_kids++] = f;
    if (strip) {
        tok_decoder *s = xcalloc(1, sizeof *s);
        s->type = D_STRIP;
        s->a = xstrdup(" ");
        s->start = 1;
        d->kids[d->n_kids++] = s;
    }
    return d;
}

/* Replaces every occurrence of a by b in t. */
static void replace_all(tok_buf *t, const char *a, const char *b) {
    size_t al = strlen(a), bl = strlen(b);
    if (!al || !strstr(t->p ? t->p : "", a)) return;
    tok_buf o = {0};
    for (size_t i = 0; i < t->n;) {
        if (i + al <= t->n && memcmp(t->p + i, a, al) == 0) {
            buf_append(&o, b, bl);
            i += al;
        } else {
            buf_putc(&o, t->p[i++]);
        }
    }
    buf_free(t);
    *t = o;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "<0xNN>" -> the byte, else -1 (Rust: u8::from_str_radix(&token[3..5], 16)). */
static int byte_token(const tok_buf *t) {
    if (t->n != 6 || memcmp(t->p, "<0x", 3) != 0 || t->p[5] != '>') return -1;
    int h = hexval(t->p[3]), l = hexval(t->p[4]);
    if (t->p[3] == '+' && l >= 0) return l;
    return h >= 0 && l >= 0 ? h * 16 + l : -1;
}

static void run(const tok_decoder *d, tok_buf *tok, int *n) {
    switch (d->type) {
    case D_SEQUENCE:
        for (int i = 0; i < d->n_kids; i++) run(d->kids[i], tok, n);
        return;
    case D_BYTE_LEVEL: {
        tok_buf bytes = {0};
        for (int i = 0; i < *n; i++) {
            size_t start = bytes.n;
            int ok = 1;
            for (size_t k = 0; k < tok[i].n;) {
                int len;
                int32_t cp = utf8_get(tok[i].p + k, tok[i].n - k, &len);
                int b = byte_level_byte(cp);
                if (b < 0) {
                    ok = 0;
                    break;
                }
                buf_putc(&bytes, (char)b);
                k += (size_t)len;
            }
            if (!ok) { /* a character outside the byte alphabet: the token's own bytes */
                bytes.n = start;
                buf_append(&bytes, tok[i].p, tok[i].n);
            }
        }
        for (int i = 0; i < *n; i++) buf_free(&tok[i]);
        tok_buf t = {0};
        utf8_lossy_append(&t, bytes.p ? bytes.p : "", bytes.n);
        buf_free(&bytes);
        tok[0] = t;
        *n = 1;
        return;
    }
    case D_REPLACE:
        for (int i = 0; i < *n; i++) replace_all(&tok[i], d->a, d->b);
        return;
    case D_BYTE_FALLBACK: {
        /* runs of <0xNN> become their bytes as one token; out has at most *n entries */
        tok_buf *res = xcalloc((size_t)*n + 1, sizeof *res);
        int w = 0;
        tok_buf pend = {0};
        for (int i = 0; i <= *n; i++) {
            int b = i < *n ? byte_token(&tok[i]) : -1;
            if (b >= 0) {
                buf_putc(&pend, (char)b);
                buf_free(&tok[i]);
                continue;
            }
            if (pend.n) {
                if (utf8_valid(pend.p, pend.n))
                    buf_append(&res[w], pend.p, pend.n);
                else /* one replacement character per byte */
                    for (size_t k = 0; k < pend.n; k++) buf_append(&res[w], "\xEF\xBF\xBD", 3);
                w++;
                pend.n = 0;
            }
            if (i < *n) res[w++] = tok[i];
        }
        buf_free(&pend);
        memcpy(tok, res, (size_t)w * sizeof *tok);
        free(res);
        *n = w;
        return;
    }
    case D_FUSE: {
        if (*n <= 1) return;
        for (int i = 1; i < *n; i++) {
            buf_append(&tok[0], tok[i].p, tok[i].n);
            buf_free(&tok[i]);
        }
        *n = 1;
        return;
    }
    case D_STRIP: {
        size_t cl = strlen(d->a);
        for (int i = 0; i < *n; i++) {
            size_t a = 0, b = tok[i].n;
            for (int k = 0; k < d->start && a + cl <= b && memcmp(tok[i].p + a, d->a, cl) == 0; k++) a += cl;
            for (int k = 0; k < d->stop && b >= a + cl && memcmp(tok[i].p + b - cl, d->a, cl) == 0; k++) b -= cl;
            if (a || b != tok[i].n) {
                memmove(tok[i].p, tok[i].p + a, b - a);
                tok[i].n = b - a;
                tok[i].p[tok[i].n] = 0;
            }
        }
        return;
    }
    case D_METASPACE:
        for (int i = 0; i < *n; i++) replace_all(&tok[i], d->a, i == 0 && d->prepend ? "" : " ");
        return;
    }
}

void decoder_run(const tok_decoder *d, tok_buf *tok, int *n, tok_buf *out) {
    if (!d) {
        for (int i = 0; i < *n; i++) {
            if (i) buf_putc(out, ' ');
            buf_append(out, tok[i].p, tok[i].n);
        }
        return;
    }
    run(d, tok, n);
    for (int i = 0; i < *n; i++) buf_append(out, tok[i].p, tok[i].n);
}
