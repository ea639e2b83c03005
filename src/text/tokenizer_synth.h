/* A synthetic byte-level BPE tokenizer (GPT-2 / Llama-3 style) of any vocabulary size,
 * for random-weight checkpoints (gptq random-model).
 *
 * The vocabulary has exactly vocab_size entries, ids 0..vocab_size-1:
 *  - the special tokens at their ids (BOS, EOS; when they sit at the top of the vocabulary,
 *    as in Llama-3, every id from the first special to the end is a special token, named as
 *    Llama-3.1 names them: <|begin_of_text|>, <|end_of_text|>, <|reserved_special_token_0|>,
 *    ..., <|eot_id|>, ...; otherwise BOS is "<s>" and EOS "</s>");
 *  - the 256 byte tokens (ByteLevel printable mapping), in byte order, on the lowest ids
 *    that are not special;
 *  - one token per merge, in merge (rank) order, on the remaining ids.
 * The merges are learned by BPE training on a built-in English word list with Zipf
 * frequencies (so that English text tokenizes into word-sized tokens), then, to reach the
 * vocabulary size, extended deterministically by appending letters to existing letter
 * tokens.  Every merge "a b" has both parts in the vocabulary and a+b is a new token.
 * The result depends only on the vocabulary size and the special ids (not on any seed). */
#ifndef GPTQ_TEXT_TOKENIZER_SYNTH_H
#define GPTQ_TEXT_TOKENIZER_SYNTH_H

#define TOK_SYNTH_MAX_EOS 8

typedef struct {
    int vocab_size;
    int bos_id;                       /* 0 <= bos_id < vocab_size */
    int n_eos;                        /* >= 1 */
    int eos_ids[TOK_SYNTH_MAX_EOS];   /* distinct, < vocab_size; eos_ids[0] == bos_id gives one
                                       * "<|endoftext|>" token (GPT-2 style) */
    int model_max_length;             /* for tokenizer_config.json */
} tok_synth_spec;

/* The tokenizer.json text (heap string), or NULL + error (vocabulary too small for the
 * 256 byte tokens and the specials, special ids out of range or repeated). */
char *tokenizer_synth_json(const tok_synth_spec *s);

/* The content of special token `id` under this spec (heap string), or NULL if id is not
 * special. */
char *tokenizer_synth_special_name(const tok_synth_spec *s, int id);

/* Writes DIR/tokenizer.json and DIR/tokenizer_config.json (atomically each). */
int tokenizer_synth_write(const char *dir, const tok_synth_spec *s);

#endif
