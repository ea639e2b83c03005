/* Runs every fuzz target over the files kept for it: tests/fuzz/regress/<target>/ (inputs
 * that once crashed, kept after the fix) and tests/fuzz/corpus/<target>/ (the seeds).
 * Usage: fuzz_regress [-v] DIR...  (each DIR holds one folder per target).  Built with the normal
 * compiler and, in CI, under ASan + UBSan; a crash or broken invariant aborts it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "fuzz.h"

static const fuzz_target targets[] = {
    {"safetensors", fuzz_safetensors}, {"st_index", fuzz_st_index},   {"config", fuzz_config},
    {"tokenizer", fuzz_tokenizer},     {"gptq_ckpt", fuzz_gptq_ckpt}, {"calib_jsonl", fuzz_calib_jsonl}, {"gguf", fuzz_gguf},
};
#define N_TARGETS (int)(sizeof targets / sizeof targets[0])

static int verbose; /* -v: print the error each input ended with (seeds should mostly parse) */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Feeds every regular file of dir to fn in name order; returns how many. */
static int run_dir(const char *dir, const fuzz_target *t) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        names = xrealloc(names, sizeof(char *) * (n + 1));
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    int ran = 0;
    for (int i = 0; i < n; i++) {
        char *p = fs_join(dir, names[i]);
        size_t len;
        char *data = fs_is_dir(p) ? NULL : fs_read_all(p, &len);
        if (data) {
            gptq_clear_error();
            t->fn((const uint8_t *)data, len);
            if (verbose) printf("  %s: %s\n", names[i], gptq_last_error()[0] ? gptq_last_error() : "ok");
            free(data);
            ran++;
        }
        free(p);
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR... (each holding one folder per fuzz target)\n", argv[0]);
        return 2;
    }
    int total = 0;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-v") == 0) {
            verbose = 1;
            continue;
        }
        if (!fs_is_dir(argv[a])) {
            fprintf(stderr, "%s: not a directory\n", argv[a]);
            return 1;
        }
        for (int i = 0; i < N_TARGETS; i++) {
            char *dir = fs_join(argv[a], targets[i].name);
            int n = run_dir(dir, &targets[i]);
            if (n) printf("%s: %d inputs\n", dir, n);
            total += n;
            free(dir);
        }
    }
    printf("%d inputs, no crash\n", total);
    return total > 0 ? 0 : 1;
}
