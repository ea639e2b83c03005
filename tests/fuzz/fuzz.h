/* Fuzz targets for every parser of outside input.
 *
 * Each target is a plain function over one input; it must never crash, leak, read out of
 * bounds or hit undefined behaviour, whatever the bytes.  Where a parse succeeds it checks
 * the invariants callers rely on (tensor data inside the file, ids inside the vocabulary,
 * configs that read back after being written) and aborts if one is broken.
 *
 * The same functions run two ways:
 *  - under libFuzzer (clang, tests/fuzz/run.sh): libfuzzer_main.c wraps one target;
 *  - in ctest (any compiler, and the sanitizer build): regress.c feeds every file of
 *    tests/fuzz/regress/<target>/ (crashes found and fixed) and tests/fuzz/corpus/<target>/
 *    (seeds) to its target. */
#ifndef GPTQ_TESTS_FUZZ_H
#define GPTQ_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_safetensors(const uint8_t *data, size_t n);  /* a .safetensors file */
int fuzz_st_index(const uint8_t *data, size_t n);     /* model.safetensors.index.json */
int fuzz_config(const uint8_t *data, size_t n);       /* config.json (quantization_config too) */
int fuzz_tokenizer(const uint8_t *data, size_t n);    /* tokenizer.json \0 tokenizer_config.json \0 text */
int fuzz_gptq_ckpt(const uint8_t *data, size_t n);    /* 5 bytes of layer settings, then a .safetensors */
int fuzz_calib_jsonl(const uint8_t *data, size_t n);  /* 2 bytes of window settings, then a .jsonl */
int fuzz_gguf(const uint8_t *data, size_t n);         /* a .gguf file (reader, then model and tokenizer loaders) */

typedef struct {
    const char *name; /* directory name under corpus/ and regress/ */
    int (*fn)(const uint8_t *data, size_t n);
} fuzz_target;

/* ---- helpers (fuzz_common.c) ---- */

/* Aborts with a message when an invariant of a successful parse does not hold. */
#define FUZZ_ASSERT(cond, ...)                                      \
    do {                                                            \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, __VA_ARGS__);    \
    } while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A NUL-terminated heap copy of n bytes. */
char *fuzz_cstr(const uint8_t *data, size_t n);
/* Splits data at its first NUL byte: *head is [0, k), the rest after the NUL (or empty). */
void fuzz_split(const uint8_t *data, size_t n, const uint8_t **rest, size_t *head_len, size_t *rest_len);
/* The shared test data folder ($GPTQ_SHARED, else the build's default), or NULL if absent. */
const char *fuzz_shared_dir(void);
/* A fresh scratch directory, removed at exit. */
const char *fuzz_scratch_dir(void);

#endif
