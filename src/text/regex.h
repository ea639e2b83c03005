/* Regular expressions for tokenizer.json patterns, compiled with PCRE2 to behave like the
 * Oniguruma engine that Hugging Face `tokenizers` uses.
 *
 * The patterns (GPT-2 / Llama-3 pre-tokenizer splits) run in UTF mode with Unicode
 * properties; `\s` is rewritten to the Unicode White_Space set because PCRE2 10.42 also
 * counts U+180E as space and Oniguruma does not.  Text with invalid UTF-8 is matched too:
 * invalid bytes simply never match.  Matches are enumerated as the `onig` crate's
 * find_iter does (an empty match right after the previous match is skipped). */
#ifndef GPTQ_TEXT_REGEX_H
#define GPTQ_TEXT_REGEX_H

#include <stddef.h>

typedef struct tok_regex tok_regex;

/* Compiles `pattern`; NULL + error naming `path` if PCRE2 rejects it. */
tok_regex *regex_compile(const char *pattern, const char *path);
/* A pattern matching the literal string s (n bytes). */
tok_regex *regex_literal(const char *s, size_t n, const char *path);
void regex_free(tok_regex *re);

/* Per-thread match state (match data and JIT stack). */
typedef struct tok_regex_scratch tok_regex_scratch;
tok_regex_scratch *regex_scratch_new(void);
void regex_scratch_free(tok_regex_scratch *s);

/* Iterates over matches of re in s[0..n): call with *pos = 0 and *last_end = (size_t)-1,
 * returns 1 with [*ms, *me) per match, 0 when there are no more. */
int regex_next(const tok_regex *re, const char *s, size_t n, size_t *pos, size_t *last_end, size_t *ms, size_t *me,
               tok_regex_scratch *scratch);

#endif
