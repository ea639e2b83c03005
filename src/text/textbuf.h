/* Growable byte buffers and piece lists: the working storage the tokenizer stages pass along.
 *
 * A tokenizer turns one text into a list of pieces (added tokens, then normalized and
 * pre-tokenized words) before the model sees them.  Every stage reads one tok_pieces and
 * writes another; the pieces' bytes live in the list's own buffer and are addressed by
 * offset, so the buffer can grow while a stage writes. */
#ifndef GPTQ_TEXT_TEXTBUF_H
#define GPTQ_TEXT_TEXTBUF_H

#include <stddef.h>

typedef struct {
    char *p;
    size_t n, cap;
} tok_buf;

void buf_reserve(tok_buf *b, size_t extra);
void buf_append(tok_buf *b, const void *s, size_t n);
void buf_putc(tok_buf *b, char c);
void buf_free(tok_buf *b);

typedef struct {
    size_t off, n; /* bytes in the list's buffer */
    int id;        /* an added token's id, or -1 for text still to tokenize */
    int at_start;  /* begins at offset 0 of the original text (Metaspace "first") */
} tok_piece;

typedef struct {
    tok_buf text;
    tok_piece *v;
    size_t count, cap;
} tok_pieces;

void pieces_clear(tok_pieces *p);
void pieces_free(tok_pieces *p);
/* Copies s into the list as a new piece. */
void pieces_push(tok_pieces *p, const char *s, size_t n, int id, int at_start);
/* Incremental form: remember text.n, append bytes to p->text, then close the piece. */
static inline size_t pieces_begin(const tok_pieces *p) { return p->text.n; }
void pieces_end(tok_pieces *p, size_t start, int id, int at_start);
static inline const char *piece_str(const tok_pieces *p, size_t i) { return p->text.p + p->v[i].off; }

/* A growable array of token ids. */
typedef struct {
    int *v;
    size_t n, cap;
} tok_ids;

void ids_push(tok_ids *a, int id);
void ids_append(tok_ids *a, const int *ids, size_t n);
void ids_free(tok_ids *a);

#endif
