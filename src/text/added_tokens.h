/* Added tokens (special or not): tokens matched as whole strings in the text before any
 * normalization or pre-tokenization splits it, as the `tokenizers` AddedVocabulary does.
 *
 * Tokens with normalized=false are matched in the raw text, those with normalized=true in
 * each normalized piece (against their own normalized form).  Matching is leftmost-longest;
 * single_word drops matches touching a word character, lstrip/rstrip absorb the
 * whitespace beside the token. */
#ifndef GPTQ_TEXT_ADDED_TOKENS_H
#define GPTQ_TEXT_ADDED_TOKENS_H

#include <stddef.h>

#include "text/normalize.h"
#include "text/textbuf.h"

typedef struct {
    char *content;
    int id;
    int single_word, lstrip, rstrip, normalized, special;
} added_token;

typedef struct {
    added_token *v;
    int n, cap;
    /* matchers, [0]: raw text, [1]: normalized pieces; patterns sorted by first byte, then
     * longest first; first[b] .. first[b + 1] index the patterns starting with byte b */
    struct added_matcher {
        char **pat;
        size_t *len;
        int *tok;
        int n;
        int first[257];
    } m[2];
} added_vocab;

/* Adds a token unless an identical one is there (content and flags), as add_tokens does. */
void added_add(added_vocab *av, const added_token *t);
/* The added token with this content, or NULL. */
const added_token *added_find(const added_vocab *av, const char *content);
/* The added token with this id (the last one added), or NULL. */
const added_token *added_by_id(const added_vocab *av, int id);
/* Builds the matchers; normalized tokens are matched in their normalized form. */
void added_build(added_vocab *av, const tok_normalizer *nm);
void added_free(added_vocab *av);

/* Splits every text piece of `in` (id < 0) around the tokens of matcher `which`, appending
 * to `out`; added-token pieces are copied through.  With `nm`, each text piece of `in` is
 * normalized first (the second pass of extract_and_normalize).  Empty pieces are dropped. */
void added_split(const added_vocab *av, int which, const tok_normalizer *nm, const tok_pieces *in, tok_pieces *out,
                 tok_buf *tmp);

#endif
