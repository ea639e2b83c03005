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

/* tokenizer_load reproduces what transformers' AutoTokenizer.from_pretrained(dir) builds:
 * for tokenizer_class LlamaTokenizer(Fast) over a non-byte-level tokenizer.json that means
 * transformers 5's rebuild (no normalizer, Metaspace pre-tokenizer with prepend_scheme
 * "first" unless legacy, no unk token), and the bos/eos/unk/pad/... tokens named in
 * tokenizer_config.json become special added tokens (new ids past the vocabulary when the
 * vocabulary lacks them).  With TOKENIZER_LOAD_RAW, tokenizer.json is read exactly as the
 * `tokenizers` library's Tokenizer.from_file does; the other files then only supply BOS/EOS
 * ids and add_bos_token. */
#define TOKENIZER_LOAD_RAW 1
tokenizer *tokenizer_load_ex(const char *dir, int flags);
/* A tokenizer from the text of a tokenizer.json (read as TOKENIZER_LOAD_RAW) with the
 * given BOS / EOS ids (-1: none); `label` names it in errors. */
tokenizer *tokenizer_load_json(const char *label, const char *json, size_t len, int bos_id, int eos_id);
/* The tokenizer of a GGUF file's tokenizer.ggml.* metadata (text/tokenizer_gguf.c);
 * tokenizer_load and tokenizer_load_ex call it when given a GGUF file instead of a directory. */
tokenizer *tokenizer_load_gguf(const char *path);
/* The same from a tokenizer.json text in memory and, optionally (NULL), the text of a
 * tokenizer_config.json; `what` names the input in errors.  For tests and fuzzing. */
tokenizer *tokenizer_from_json(const char *json, size_t len, const char *tokenizer_config, size_t tcfg_len,
                               const char *what, int flags);
void tokenizer_free(tokenizer *t);

/* Encodes `len` bytes of UTF-8 text.  With add_bos, prepends BOS when the tokenizer's
 * post-processor / add_bos_token asks for it.  Special tokens in the text are recognised.
 * *ids_out is heap-allocated (free()); returns the number of ids, or -1 on error. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int **ids_out);

/* Decodes ids to a NUL-terminated heap string (free()), as transformers' decode with
 * skip_special_tokens=False.  Invalid ids give NULL + error. */
char *tokenizer_decode(const tokenizer *t, const int *ids, int n);
/* The same, with the length in bytes (the text may hold NUL bytes). */
char *tokenizer_decode_n(const tokenizer *t, const int *ids, int n, size_t *len_out);

/* Number of ids: model vocabulary plus added tokens (transformers' len(tokenizer)).  Can
 * exceed the model's embedding rows: stories260K gives 514, its "<s>"/"</s>" (ids 512/513,
 * added by transformers from tokenizer_config.json) having no embedding. */
int tokenizer_vocab_size(const tokenizer *t);
/* Size of the BPE model's own vocabulary, without added tokens past it (transformers'
 * tokenizer.vocab_size): 512 for stories260K. */
int tokenizer_model_vocab_size(const tokenizer *t);
tokenizer_kind tokenizer_get_kind(const tokenizer *t);
const char *tokenizer_kind_name(const tokenizer *t); /* "byte-level BPE" / "SentencePiece BPE" */
int tokenizer_bos(const tokenizer *t);               /* -1 if none */
int tokenizer_is_eos(const tokenizer *t, int id);
/* The vocabulary string of an id (NULL if out of range). */
const char *tokenizer_token(const tokenizer *t, int id);

#endif
