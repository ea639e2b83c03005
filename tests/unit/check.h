/* A tiny test harness: CHECK(cond, fmt, ...) records a failure and goes on;
 * check_done() prints "N passed, N failed" and returns the exit code.
 * Tests that need ../shared call check_shared() and exit 77 (ctest: skipped) without it. */
#ifndef GPTQ_TESTS_CHECK_H
#define GPTQ_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (cond) {                                                \
            check_passed++;                                        \
        } else {                                                   \
            check_failed++;                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
            fprintf(stderr, __VA_ARGS__);                          \
            fputc('\n', stderr);                                   \
        }                                                          \
    } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define CHECK_CLOSE(a, b, tol, what)                                                                        \
    do {                                                                                                    \
        double ca_ = (a), cb_ = (b);                                                                        \
        CHECK(fabs(ca_ - cb_) <= (tol) * (fabs(cb_) > 1 ? fabs(cb_) : 1), "%s: %.9g vs %.9g", what, ca_, cb_); \
    } while (0)

static inline int check_done(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

/* Path under $GPTQ_SHARED (default ../shared); exits 77 if that folder is missing. */
static inline const char *check_shared(const char *rel) {
    static char buf[8][1024];
    static int k;
    const char *root = getenv("GPTQ_SHARED");
    if (!root) root = "../shared";
    if (access(root, F_OK) != 0) {
        printf("skipped: %s not found\n", root);
        exit(77);
    }
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

/* Path under the source tree ($GPTQ_SRC, default "."). */
static inline const char *check_src(const char *rel) {
    static char buf[8][1024];
    static int k;
    const char *root = getenv("GPTQ_SRC");
    if (!root) root = ".";
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

/* A scratch directory for this test ($GPTQ_TMP/<name>), created empty. */
static inline const char *check_tmpdir(const char *name) {
    static char b[1024];
    const char *root = getenv("GPTQ_TMP");
    if (!root) root = "/tmp/gptq-test";
    snprintf(b, sizeof b, "rm -rf '%s/%s' && mkdir -p '%s/%s'", root, name, root, name);
    if (system(b) != 0) {
        fprintf(stderr, "cannot create %s/%s\n", root, name);
        exit(1);
    }
    snprintf(b, sizeof b, "%s/%s", root, name);
    return b;
}

#endif
