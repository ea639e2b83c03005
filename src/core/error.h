/* Error reporting for the library.
 *
 * Library functions that can fail return an int (0 = success, -1 = failure) or a pointer
 * (NULL = failure) and leave a one-line, human-readable message here, naming the file and
 * what is wrong ("model.safetensors: header length 9999 runs past the end of the file").
 * The CLI prints it and exits non-zero.  The message is per thread. */
#ifndef GPTQ_CORE_ERROR_H
#define GPTQ_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Sets the current error message (printf-style) and returns -1, so that
 * `return gptq_fail("...")` reads naturally in functions that return int. */
int gptq_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prefixes the current message with "context: " (e.g. the file being read). Returns -1. */
int gptq_fail_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last message set on this thread ("" if none). */
const char *gptq_last_error(void);
void gptq_clear_error(void);

/* Warnings go to stderr at once, prefixed with "gptq: warning: ". */
void gptq_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Out-of-memory is not a recoverable condition here: these abort with a message. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned allocation (free with free()). */
void *xaligned_alloc(size_t n);

#endif
