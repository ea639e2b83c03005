/* Tokenizers read from a Hugging Face tokenizer.json.
 *
 * Two families, told apart by the file itself:
 *  - byte-level BPE (GPT-2 / Llama-3): a Split-regex pre-tokenizer (run with PCRE2) and
 *    ByteLevel mapping of bytes to printable code points, then BPE merges by rank;
 *  - SentencePiece-style BPE (Llama-2): a normalizer that prepends "▁" and replaces spaces
 *    by "▁", BPE merges over code points, and <0xNN> byte-fallback tokens for anything
 *    not in the vocabulary.
 * Added tokens (special or not) are matched in the raw text first and never split. */
#ifndef GPTQ_TEXT_TOKENIZER_H
#define GPTQ_TEXT_TOKENIZER_H

#include <stddef.h>

typedef enum { TOK_BYTE_LEVEL_BPE = 0, TOK_SENTENCEPIECE_BPE = 1 } tokenizer_kind;

typedef struct tokenizer tokenizer;

/* Loads DIR/tokenizer.json (and DIR/tokenizer_config.json, DIR/config.json when present,
 * for BOS/EOS and add_bos_token).  NULL + gptq_last_error() on failure. */
tokenizer *tokenizer_load(const char *dir);
void tokenizer_free(tokenizer *t);

/* Encodes `len` bytes of UTF-8 text.  With add_bos, prepends BOS when the tokenizer's
 * post-processor / add_bos_token asks for it.  Special tokens in the text are recognised.
 * *ids_out is heap-allocated (free()); returns the number of ids, or -1 on error. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int **ids_out);

/* Decodes ids to a NUL-terminated heap string (free()), as transformers' decode with
 * skip_special_tokens=False.  Invalid ids give NULL + error. */
char *tokenizer_decode(const tokenizer *t, const int *ids, int n);

int tokenizer_vocab_size(const tokenizer *t);
tokenizer_kind tokenizer_get_kind(const tokenizer *t);
const char *tokenizer_kind_name(const tokenizer *t); /* "byte-level BPE" / "SentencePiece BPE" */
int tokenizer_bos(const tokenizer *t);               /* -1 if none */
int tokenizer_is_eos(const tokenizer *t, int id);
/* The vocabulary string of an id (NULL if out of range). */
const char *tokenizer_token(const tokenizer *t, int id);

#endif
