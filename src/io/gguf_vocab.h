/* Tokenizer metadata of a GGUF file (the tokenizer.ggml.* keys llama.cpp reads), from a
 * Hugging Face tokenizer.json, and back.
 *
 * Two tokenizer families map onto llama.cpp's:
 *  - byte-level BPE (GPT-2 / Llama-3 tokenizer.json): tokenizer.ggml.model "gpt2" with the
 *    vocabulary strings as they are (byte-level alphabet), the merges as "left right"
 *    strings, and tokenizer.ggml.pre naming the pre-tokenizer regex llama.cpp must use
 *    ("llama-bpe" for the Llama-3 split regex, "gpt-2" for GPT-2's);
 *  - SentencePiece-style BPE with byte fallback (Llama-2): tokenizer.ggml.model "llama".
 *    llama.cpp tokenizes these by scores, merging the adjacent pair whose concatenation is
 *    the highest-scoring token (leftmost first).  With score = −(rank of the merge that
 *    creates the token) that is BPE by merge rank, so we write exactly that; tokens no merge
 *    creates (characters, bytes, specials) score 0, except multi-character ones that no
 *    merge creates (which BPE never emits) at −1e9.  <0xNN> tokens are BYTE, the unknown
 *    token UNKNOWN, special added tokens CONTROL.
 * The token list has exactly vocab_size entries (the embedding rows): ids the tokenizer
 * lacks become "[PADn]" (UNUSED), added tokens past vocab_size are dropped with a warning.
 * The chat template of tokenizer_config.json, if any, goes to tokenizer.chat_template. */
#ifndef GPTQ_IO_GGUF_VOCAB_H
#define GPTQ_IO_GGUF_VOCAB_H

#include "io/gguf.h"
#include "io/hf_config.h"

/* llama.cpp's token types (tokenizer.ggml.token_type). */
enum { GGUF_TOK_NORMAL = 1, GGUF_TOK_UNKNOWN = 2, GGUF_TOK_CONTROL = 3, GGUF_TOK_USER_DEFINED = 4, GGUF_TOK_UNUSED = 5, GGUF_TOK_BYTE = 6 };

/* Adds the tokenizer.* keys for the tokenizer of model directory dir. */
int gguf_vocab_write(gguf_writer *w, const char *dir, const hf_config *c);

/* The reverse: a tokenizer.json text (heap string) that our tokenizer loads with the same
 * behaviour as llama.cpp's for these keys, and the BOS / EOS ids (-1 if none) and whether
 * BOS is added.  Only the "gpt2" (pre "llama-bpe", "gpt-2", "default") and "llama" models. */
char *gguf_vocab_to_hf_json(const gguf_file *g, int *bos, int *eos, int *add_bos);

#endif
