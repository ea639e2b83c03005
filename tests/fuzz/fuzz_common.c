#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "fuzz.h"

void fuzz_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz invariant broken at %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

char *fuzz_cstr(const uint8_t *data, size_t n) {
    char *s = xmalloc(n + 1);
    if (n) memcpy(s, data, n);
    s[n] = 0;
    return s;
}

void fuzz_split(const uint8_t *data, size_t n, const uint8_t **rest, size_t *head_len, size_t *rest_len) {
    const uint8_t *z = n ? memchr(data, 0, n) : NULL;
    if (!z) {
        *head_len = n, *rest = data + n, *rest_len = 0;
        return;
    }
    *head_len = (size_t)(z - data);
    *rest = z + 1;
    *rest_len = n - *head_len - 1;
}

const char *fuzz_shared_dir(void) {
    static char *dir;
    static int done;
    if (!done) {
        done = 1;
        const char *env = getenv("GPTQ_SHARED");
#ifdef GPTQ_FUZZ_SHARED_DEFAULT
        if (!env) env = GPTQ_FUZZ_SHARED_DEFAULT;
#endif
        if (env && fs_is_dir(env)) dir = xstrdup(env);
    }
    return dir;
}

static char scratch[256];

static void remove_scratch(void) {
    if (scratch[0]) fs_remove_tree(scratch);
}

const char *fuzz_scratch_dir(void) {
    if (!scratch[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/gptq-fuzz.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(scratch)) fuzz_fail(__FILE__, __LINE__, "cannot create a scratch directory under %s", scratch);
        atexit(remove_scratch);
    }
    return scratch;
}
