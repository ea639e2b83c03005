/* Matching of added tokens in text (see added_tokens.h). */
#include "text/added_tokens.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/utf8.h"

static int same_token(const added_token *a, const added_token *b) {
    return strcmp(a->content, b->content) == 0 && a->single_word == b->single_word && a->lstrip == b->lstrip &&
           a->rstrip == b->rstrip && a->normalized == b->normalized && a->special == b->special;
}

void added_add(added_vocab *av, const added_token *t) {
    if (!t->content[0]) return;
    for (int i = 0; i < av->n; i++)
        if (av->v[i].id == t->id && same_token(&av->v[i], t)) return;
    /* a token given again with another id or flags replaces the old entry, as the
     * content -> id map of `tokenizers` does */
    for (int i = 0; i < av->n; i++)
        if (strcmp(av->v[i].content, t->content) == 0) {
            free(av->v[i].content);
            av->v[i] = *t;
            av->v[i].content = xstrdup(t->content);
            return;
        }
    if (av->n == av->cap) {
        av->cap = av->cap ? 2 * av->cap : 16;
        av->v = xrealloc(av->v, (size_t)av->cap * sizeof *av->v);
    }
    av->v[av->n] = *t;
    av->v[av->n].content = xstrdup(t->content);
    av->n++;
}

const added_token *added_find(const added_vocab *av, const char *content) {
    for (int i = 0; i < av->n; i++)
        if (strcmp(av->v[i].content, content) == 0) return &av->v[i];
    return NULL;
}

const added_token *added_by_id(const added_vocab *av, int id) {
    for (int i = av->n - 1; i >= 0; i--)
        if (av->v[i].id == id) return &av->v[i];
    return NULL;
}

static void free_matcher(struct added_matcher *m) {
    for (int i = 0; i < m->n; i++) free(m->pat[i]);
    free(m->pat);
    free(m->len);
    free(m->tok);
    memset(m, 0, sizeof *m);
}

void added_free(added_vocab *av) {
    for (int i = 0; i < av->n; i++) free(av->v[i].content);
    free(av->v);
    free_matcher(&av->m[0]);
    free_matcher(&av->m[1]);
    memset(av, 0, sizeof *av);
}

typedef struct {
    char *pat;
    size_t len;
    int tok, order;
} pattern;

static int cmp_pat(const void *x, const void *y) {
    const pattern *a = x, *b = y;
    unsigned char ca = (unsigned char)a->pat[0], cb = (unsigned char)b->pat[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order; /* equal patterns: the earlier wins */
}

void added_build(added_vocab *av, const tok_normalizer *nm) {
    for (int w = 0; w < 2; w++) {
        struct added_matcher *m = &av->m[w];
        free_matcher(m);
        pattern *pats = xcalloc((size_t)av->n + 1, sizeof *pats);
        int n = 0;
        /* special tokens first, then the others, as `tokenizers` orders its patterns */
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < av->n; i++) {
                const added_token *t = &av->v[i];
                if ((t->normalized != 0) != w || (t->special != 0) != (pass == 0)) continue;
                tok_buf b = {0};
                if (w == 1)
                    normalizer_apply(nm, t->content, strlen(t->content), &b);
                else
                    buf_append(&b, t->content, strlen(t->content));
                if (b.n == 0) {
                    buf_free(&b);
                    continue;
                }
                pats[n] = (pattern){b.p, b.n, i, n};
                n++;
            }
        qsort(pats, (size_t)n, sizeof *pats, cmp_pat);
        m->n = n;
        m->pat = xcalloc((size_t)n + 1, sizeof *m->pat);
        m->len = xcalloc((size_t)n + 1, sizeof *m->len);
        m->tok = xcalloc((size_t)n + 1, sizeof *m->tok);
        for (int i = 0; i < n; i++) {
            m->pat[i] = pats[i].pat;
            m->len[i] = pats[i].len;
            m->tok[i] = pats[i].tok;
        }
        free(pats);
        int k = 0;
        for (int b = 0; b <= 256; b++) {
            while (k < n && (unsigned char)m->pat[k][0] < b) k++;
            m->first[b] = k;
        }
    }
}

/* Leftmost-longest match in s[from..n): 1 with [*ms, *me) and the token index. */
static int find_match(const struct added_matcher *m, const char *s, size_t n, size_t from, size_t *ms, size_t *me,
                      int *tok) {
    if (m->n == 0) return 0;
    for (size_t i = from; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        for (int k = m->first[c]; k < m->first[c + 1]; k++) {
            if (m->len[k] <= n - i && memcmp(s + i, m->pat[k], m->len[k]) == 0) {
                *ms = i;
                *me = i + m->len[k];
                *tok = m->tok[k];
                return 1;
            }
        }
    }
    return 0;
}

/* The code point ending at s[end) (before end), or -1. */
static int32_t last_char(const char *s, size_t end) {
    if (end == 0) return -1;
    size_t k = end - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80 && end - k < 4) k--;
    int len;
    int32_t cp = utf8_get(s + k, end - k, &len);
    return (size_t)len == end - k ? cp : -1;
}

static void split_piece(const added_vocab *av, const struct added_matcher *m, const char *s, size_t n, int at_start,
                        tok_pieces *out) {
    size_t start_offset = 0, from = 0, ms, me;
    int tok;
    while (find_match(m, s, n, from, &ms, &me, &tok)) {
        const added_token *t = &av->v[tok];
        size_t start = ms, stop = me;
        from = me;
        if (t->single_word) {
            int len;
            int start_space = start == 0 || !uc_is_word(last_char(s, start));
            int stop_space = stop == n || !uc_is_word(utf8_get(s + stop, n - stop, &len));
            if (!start_space || !stop_space) continue;
        }
        if (t->lstrip) {
            size_t k = start;
            while (k > 0) {
                size_t j = k - 1;
                while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80 && k - j < 4) j--;
                int len;
                int32_t cp = utf8_get(s + j, k - j, &len);
                if ((size_t)len != k - j || !uc_is_whitespace(cp)) break;
                k = j;
            }
            start = k > start_offset ? k : start_offset;
        }
        if (t->rstrip) {
            while (stop < n) {
                int len;
                int32_t cp = utf8_get(s + stop, n - stop, &len);
                if (!uc_is_whitespace(cp)) break;
                stop += (size_t)len;
            }
        }
        if (start_offset < start)
            pieces_push(out, s + start_offset, start - start_offset, -1, at_start && start_offset == 0);
        pieces_push(out, s + start, stop - start, t->id, at_start && start == 0);
        start_offset = stop;
    }
    if (start_offset < n) pieces_push(out, s + start_offset, n - start_offset, -1, at_start && start_offset == 0);
}

void added_split(const added_vocab *av, int which, const tok_normalizer *nm, const tok_pieces *in, tok_pieces *out,
                 tok_buf *tmp) {
    const struct added_matcher *m = &av->m[which];
    for (size_t i = 0; i < in->count; i++) {
        const tok_piece *p = &in->v[i];
        const char *s = piece_str(in, i);
        if (p->id >= 0) {
            pieces_push(out, s, p->n, p->id, p->at_start);
            continue;
        }
        size_t n = p->n;
        if (nm) {
            tmp->n = 0;
            normalizer_apply(nm, s, n, tmp);
            s = tmp->p;
            n = tmp->n;
        }
        if (n == 0) continue;
        split_piece(av, m, s, n, p->at_start, out);
    }
}
