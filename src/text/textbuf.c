/* Growable byte buffers and piece lists for the tokenizer stages (see textbuf.h). */
#include "text/textbuf.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void buf_reserve(tok_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

void buf_append(tok_buf *b, const void *s, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void buf_putc(tok_buf *b, char c) {
    buf_reserve(b, 1);
    b->p[b->n++] = c;
    b->p[b->n] = 0;
}

void buf_free(tok_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

void pieces_clear(tok_pieces *p) {
    p->text.n = 0;
    p->count = 0;
}

void pieces_free(tok_pieces *p) {
    buf_free(&p->text);
    free(p->v);
    p->v = NULL;
    p->count = p->cap = 0;
}

void pieces_end(tok_pieces *p, size_t start, int id, int at_start) {
    if (p->count == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->v[p->count++] = (tok_piece){start, p->text.n - start, id, at_start};
}

void pieces_push(tok_pieces *p, const char *s, size_t n, int id, int at_start) {
    size_t start = pieces_begin(p);
    buf_append(&p->text, s, n);
    pieces_end(p, start, id, at_start);
}

void ids_push(tok_ids *a, int id) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = id;
}

void ids_append(tok_ids *a, const int *ids, size_t n) {
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap < a->n + n) cap *= 2;
        a->v = xrealloc(a->v, cap * sizeof *a->v);
        a->cap = cap;
    }
    if (n) memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
}

void ids_free(tok_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}
