/* UTF-8 helpers for the tokenizer: stepping over characters in text that may hold invalid
 * bytes (each invalid byte counts as a one-byte character, so nothing is lost or crashes),
 * encoding code points, and the lossy repair that Rust's String::from_utf8_lossy (used by
 * Hugging Face decoders) applies to decoded bytes. */
#ifndef GPTQ_TEXT_UTF8_H
#define GPTQ_TEXT_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "text/textbuf.h"

/* The code point at s (n bytes available), its length in *len; -1 with *len = 1 when the
 * bytes there are not a valid, shortest-form UTF-8 sequence. */
int32_t utf8_get(const char *s, size_t n, int *len);
static inline int utf8_len(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    if (c < 0x80) return 1;
    int len;
    utf8_get(s, n, &len);
    return len;
}
/* Writes cp as UTF-8 (1..4 bytes) and returns the length. */
int utf8_put(uint32_t cp, char *out);
int utf8_valid(const char *s, size_t n);
/* Appends s, each maximal invalid subsequence replaced by U+FFFD (from_utf8_lossy). */
void utf8_lossy_append(tok_buf *out, const char *s, size_t n);

/* s with control characters escaped (\n, \xNN) and cut to fit `cap`, for one-line error
 * messages quoting tokens; returns out. */
const char *str_escape(const char *s, char *out, size_t cap);

/* Rust's char::is_whitespace (the Unicode White_Space property). */
int uc_is_whitespace(int32_t cp);
/* Rust's char::is_alphanumeric (Alphabetic or Numeric), approximated by general category. */
int uc_is_alnum(int32_t cp);
/* The Rust regex crate's Unicode \w (Alphabetic, marks, Nd, Pc, joiners), by category. */
int uc_is_word(int32_t cp);
/* Rust's char::is_numeric (general category N*). */
int uc_is_numeric(int32_t cp);

#endif
