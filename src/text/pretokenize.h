/* tokenizer.json pre-tokenizers: how normalized text is cut into words before BPE.
 *
 * Supported: Sequence; Split (regex or string pattern, every split behavior, invert);
 * ByteLevel (optional prefix space, the GPT-2 regex when use_regex, then the byte ->
 * printable-character mapping); Metaspace (spaces to "▁", prepend scheme
 * always/first/never, optional split); Digits; WhitespaceSplit.  Others are refused. */
#ifndef GPTQ_TEXT_PRETOKENIZE_H
#define GPTQ_TEXT_PRETOKENIZE_H

#include <cjson/cJSON.h>

#include "text/regex.h"
#include "text/textbuf.h"

typedef struct tok_pretok tok_pretok;

typedef enum { PREPEND_NEVER = 0, PREPEND_FIRST = 1, PREPEND_ALWAYS = 2 } prepend_scheme;

/* Parses j (null/absent: *out = NULL, no pre-tokenization).  Errors name `path`. */
int pretok_parse(const cJSON *j, const char *path, tok_pretok **out);
/* A Metaspace pre-tokenizer built in code (transformers' LlamaTokenizer does this). */
tok_pretok *pretok_metaspace(const char *replacement, prepend_scheme scheme, int split);
void pretok_free(tok_pretok *p);
/* Whether a ByteLevel step is present (the vocabulary then uses the byte alphabet). */
int pretok_has_byte_level(const tok_pretok *p);

/* Pre-tokenizes the text pieces of in (id < 0) into out (cleared first); added-token
 * pieces are copied through and empty pieces dropped. */
void pretok_apply(const tok_pretok *p, const tok_pieces *in, tok_pieces *out, tok_regex_scratch *rs);

#endif
