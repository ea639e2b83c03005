/* Normalizers of tokenizer.json (see normalize.h). */
#include "text/normalize.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/error.h"
#include "text/utf8.h"

typedef enum { N_SEQUENCE, N_PREPEND, N_REPLACE, N_UNICODE, N_LOWERCASE, N_STRIP } norm_type;

struct tok_normalizer {
    norm_type type;
    tok_normalizer **kids; /* Sequence */
    int n_kids;
    char *a, *b; /* Prepend: a; Replace: a -> b */
    int flags;   /* NFx: utf8proc options; Strip: 1 = left, 2 = right */
};

void normalizer_free(tok_normalizer *nm) {
    if (!nm) return;
    for (int i = 0; i < nm->n_kids; i++) normalizer_free(nm->kids[i]);
    free(nm->kids);
    free(nm->a);
    free(nm->b);
    free(nm);
}

static const char *str_field(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int normalizer_parse(const cJSON *j, const char *path, tok_normalizer **out) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return 0;
    const char *type = str_field(j, "type");
    if (!type) return gptq_fail("%s: normalizer without a \"type\"", path);
    tok_normalizer *nm = xcalloc(1, sizeof *nm);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(list)) goto bad;
        nm->type = N_SEQUENCE;
        nm->kids = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *nm->kids);
        for (const cJSON *e = list->child; e; e = e->next) {
            if (normalizer_parse(e, path, &nm->kids[nm->n_kids])) goto fail;
            if (nm->kids[nm->n_kids]) nm->n_kids++;
        }
    } else if (strcmp(type, "Prepend") == 0) {
        const char *s = str_field(j, "prepend");
        if (!s) goto bad;
        nm->type = N_PREPEND;
        nm->a = xstrdup(s);
    } else if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *content = str_field(j, "content");
        const char *s = str_field(pat, "String");
        if (!content) goto bad;
        if (!s) {
            gptq_fail("%s: normalizer Replace with a regex pattern is not supported", path);
            goto fail;
        }
        nm->type = N_REPLACE;
        nm->a = xstrdup(s);
        nm->b = xstrdup(content);
    } else if (strcmp(type, "NFC") == 0 || strcmp(type, "NFD") == 0 || strcmp(type, "NFKC") == 0 ||
               strcmp(type, "NFKD") == 0) {
        nm->type = N_UNICODE;
        nm->flags = UTF8PROC_STABLE | (type[2] == 'K' ? UTF8PROC_COMPAT : 0) |
                    (type[strlen(type) - 1] == 'C' ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE);
    } else if (strcmp(type, "Lowercase") == 0) {
        nm->type = N_LOWERCASE;
    } else if (strcmp(type, "Strip") == 0) {
        nm->type = N_STRIP;
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "strip_left");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "strip_right");
        nm->flags = (cJSON_IsTrue(l) ? 1 : 0) | (cJSON_IsTrue(r) ? 2 : 0);
    } else {
        gptq_fail("%s: unsupported normalizer type \"%s\"", path, type);
        goto fail;
    }
    *out = nm;
    return 0;
bad:
    gptq_fail("%s: malformed %s normalizer", path, type);
fail:
    normalizer_free(nm);
    return -1;
}

static void apply_one(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out) {
    switch (nm->type) {
    case N_SEQUENCE: {
        tok_buf cur = {0}, next = {0};
        buf_append(&cur, s, n);
        for (int i = 0; i < nm->n_kids; i++) {
            next.n = 0;
            apply_one(nm->kids[i], cur.p, cur.n, &next);
            tok_buf t = cur;
            cur = next;
            next = t;
        }
        buf_append(out, cur.p, cur.n);
        buf_free(&cur);
        buf_free(&next);
        return;
    }
    case N_PREPEND:
        if (n) buf_append(out, nm->a, strlen(nm->a));
        buf_append(out, s, n);
        return;
    case N_REPLACE: {
        size_t pl = strlen(nm->a), cl = strlen(nm->b), i = 0;
        if (pl == 0) {
            buf_append(out, s, n);
            return;
        }
        while (i < n) {
            if (i + pl <= n && memcmp(s + i, nm->a, pl) == 0) {
                buf_append(out, nm->b, cl);
                i += pl;
            } else {
                buf_putc(out, s[i++]);
            }
        }
        return;
    }
    case N_UNICODE: {
        utf8proc_uint8_t *res = NULL;
        utf8proc_ssize_t m = utf8_valid(s, n) ? utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &res,
                                                             (utf8proc_option_t)nm->flags)
                                              : -1;
        if (m >= 0)
            buf_append(out, res, (size_t)m);
        else
            buf_append(out, s, n); /* invalid UTF-8: leave as is */
        free(res);
        return;
    }
    case N_LOWERCASE:
        for (size_t i = 0; i < n;) {
            int len;
            int32_t cp = utf8_get(s + i, n - i, &len);
            if (cp == 0x130) { /* İ lowercases to i + combining dot above */
                buf_append(out, "i\xCC\x87", 3);
            } else if (cp >= 0) {
                char enc[4];
                buf_append(out, enc, (size_t)utf8_put((uint32_t)utf8proc_tolower(cp), enc));
            } else {
                buf_putc(out, s[i]);
            }
            i += (size_t)len;
        }
        return;
    case N_STRIP: {
        size_t a = 0, b = n;
        if (nm->flags & 1)
            while (a < b) {
                int len;
                int32_t cp = utf8_get(s + a, b - a, &len);
                if (!uc_is_whitespace(cp)) break;
                a += (size_t)len;
            }
        if (nm->flags & 2)
            while (b > a) {
                size_t k = b - 1;
                while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80 && b - k < 4) k--;
                int len;
                int32_t cp = utf8_get(s + k, b - k, &len);
                if ((size_t)len != b - k || !uc_is_whitespace(cp)) break;
                b = k;
            }
        buf_append(out, s + a, b - a);
        return;
    }
    }
}

void normalizer_apply(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out) {
    if (!nm) {
        buf_append(out, s, n);
        return;
    }
    apply_one(nm, s, n, out);
}
