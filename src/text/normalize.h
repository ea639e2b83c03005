/* tokenizer.json normalizers: the text rewriting applied to each non-added-token piece
 * before pre-tokenization.
 *
 * Supported: Sequence, Prepend (SentencePiece's "▁" prefix; not applied to empty pieces),
 * Replace with a String pattern (spaces to "▁"), NFC/NFD/NFKC/NFKD, Lowercase, Strip.
 * Anything else is refused at load time rather than silently ignored. */
#ifndef GPTQ_TEXT_NORMALIZE_H
#define GPTQ_TEXT_NORMALIZE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "text/textbuf.h"

typedef struct tok_normalizer tok_normalizer;

/* Parses j (null/absent: *out = NULL, no normalization).  Errors name `path`. */
int normalizer_parse(const cJSON *j, const char *path, tok_normalizer **out);
void normalizer_free(tok_normalizer *nm);
/* Appends the normalized form of s[0..n) to out. */
void normalizer_apply(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out);

#endif
