/* Calibration sets for quantization: windows of token ids cut from a text.
 *
 * As the GPTQ reference does for its text datasets: the whole text is tokenized once
 * without BOS and n windows of seqlen tokens start at uniformly random offsets drawn
 * from a seeded generator (windows may overlap). */
#ifndef GPTQ_TEXT_CALIB_H
#define GPTQ_TEXT_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

typedef struct {
    int n;      /* windows */
    int seqlen; /* tokens per window */
    int *ids;   /* (n, seqlen) */
} calib_set;

/* A plain text file is used as is; a .jsonl file contributes the "text" field of every
 * line, joined by blank lines.  Errors (missing/empty file, bad JSON line, text shorter
 * than one window) name the file. */
int calib_from_file(calib_set *c, const tokenizer *tok, const char *path, int n, int seqlen, uint64_t seed);
/* The same from text already in memory (`what` names it in errors). */
int calib_from_text(calib_set *c, const tokenizer *tok, const char *text, size_t len, const char *what, int n, int seqlen,
                    uint64_t seed);
void calib_free(calib_set *c);

/* The text a .jsonl calibration file contributes: the "text" fields of its lines (raw:
 * NUL-terminated file contents) joined by blank lines; blank lines are skipped.  NULL +
 * error naming `path` and the line for a line that is not an object with a "text" string. */
char *calib_jsonl_text(const char *path, const char *raw, size_t *len_out);

/* The deterministic generator used for window offsets (xorshift64*): a value in [0, bound). */
uint64_t calib_rand(uint64_t *state, uint64_t bound);

#endif
