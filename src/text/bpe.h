/* The BPE model of a tokenizer.json: vocabulary, ranked merges, and the merge loop that
 * turns one pre-tokenized word into ids.
 *
 * It follows the `tokenizers` crate exactly: a word starts as one symbol per character
 * (with <0xNN> byte fallback, or <unk>, for characters outside the vocabulary), then the
 * adjacent pair of lowest merge rank (leftmost on ties) is merged until none is left; with
 * ignore_merges a word that is itself in the vocabulary is emitted whole. */
#ifndef GPTQ_TEXT_BPE_H
#define GPTQ_TEXT_BPE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "text/strmap.h"
#include "text/textbuf.h"

typedef struct {
    strmap vocab;          /* token -> id */
    const char **id_tok;   /* id -> token (NULL for unused ids) */
    int n_ids;             /* largest id + 1 */
    int vocab_count;       /* entries in the vocabulary (get_vocab_size) */
    uint64_t *mkey;        /* merges: (left id << 32 | right id) -> rank, merged id */
    int32_t *mrank, *mnew; /* mrank -1 = empty slot */
    size_t mcap;
    int unk_id; /* -1: no unknown token (characters are dropped) */
    int fuse_unk, byte_fallback, ignore_merges;
    int byte_id[256];      /* id of "<0xNN>", -1 if absent */
    char *prefix, *suffix; /* continuing_subword_prefix / end_of_word_suffix, or NULL */
} bpe_model;

/* Per-call working memory of bpe_word (free with bpe_scratch_free). */
typedef struct {
    struct bpe_sym *sym;
    size_t sym_cap;
    struct bpe_merge *heap;
    size_t heap_cap;
    tok_buf tmp;
} bpe_scratch;

/* Reads the "model" object of tokenizer.json (type BPE).  `path` names the file in errors. */
int bpe_load(bpe_model *m, const cJSON *model, const char *path);
void bpe_free(bpe_model *m);
/* Appends the ids of word w (n bytes, in the vocabulary's alphabet) to out. */
void bpe_word(const bpe_model *m, const char *w, size_t n, bpe_scratch *s, tok_ids *out);
void bpe_scratch_free(bpe_scratch *s);
int bpe_token_id(const bpe_model *m, const char *tok, size_t n); /* -1 if absent */

#endif
