#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_LEN 1024
static _Thread_local char err_msg[ERR_LEN];

int gptq_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, ERR_LEN, fmt, ap);
    va_end(ap);
    return -1;
}

int gptq_fail_context(const char *fmt, ...) {
    char prefix[ERR_LEN], old[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, ERR_LEN, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, ERR_LEN);
    /* prefix + ": " + old, truncated to the buffer */
    size_t n = strlen(prefix);
    if (n > ERR_LEN - 3) n = ERR_LEN - 3;
    memcpy(err_msg, prefix, n);
    memcpy(err_msg + n, ": ", 2);
    size_t room = ERR_LEN - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(err_msg + n + 2, old, m);
    err_msg[n + 2 + m] = 0;
    return -1;
}

const char *gptq_last_error(void) { return err_msg; }
void gptq_clear_error(void) { err_msg[0] = 0; }

void gptq_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("gptq: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void oom(size_t n) {
    fprintf(stderr, "gptq: error: out of memory allocating %zu bytes\n", n);
    exit(1);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *xaligned_alloc(size_t n) {
    size_t rounded = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) oom(n);
    return p;
}
