/* A hash map from byte strings to ints (open addressing, keys copied into one pool).
 *
 * The tokenizer looks up every character and every merged symbol in its vocabulary, and
 * every pre-tokenized word in a per-call cache; this map serves both. */
#ifndef GPTQ_TEXT_STRMAP_H
#define GPTQ_TEXT_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *hash; /* 0 = empty slot */
    size_t *key_off;
    uint32_t *key_len;
    int *val;
    size_t cap, count; /* cap: a power of two */
    char *pool;        /* keys, back to back */
    size_t pool_n, pool_cap;
} strmap;

void strmap_init(strmap *m, size_t expected);
void strmap_free(strmap *m);
/* 1 and *val when present, else 0. */
int strmap_get(const strmap *m, const char *k, size_t n, int *val);
/* Inserts or overwrites. */
void strmap_put(strmap *m, const char *k, size_t n, int val);
/* The stored copy of the key of the entry holding k (NULL if absent). */
const char *strmap_key(const strmap *m, const char *k, size_t n);

#endif
