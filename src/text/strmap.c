/* String -> int hash map used for vocabularies and word caches (see strmap.h). */
#include "text/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h ? h : 1;
}

static void alloc_slots(strmap *m, size_t cap) {
    m->cap = cap;
    m->hash = xcalloc(cap, sizeof *m->hash);
    m->key_off = xmalloc(cap * sizeof *m->key_off);
    m->key_len = xmalloc(cap * sizeof *m->key_len);
    m->val = xmalloc(cap * sizeof *m->val);
}

void strmap_init(strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    alloc_slots(m, cap);
}

void strmap_free(strmap *m) {
    free(m->hash);
    free(m->key_off);
    free(m->key_len);
    free(m->val);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(const strmap *m, uint64_t h, const char *k, size_t n) {
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->hash[i]) {
        if (m->hash[i] == h && m->key_len[i] == n && memcmp(m->pool + m->key_off[i], k, n) == 0) return i;
        i = (i + 1) & mask;
    }
    return i;
}

int strmap_get(const strmap *m, const char *k, size_t n, int *val) {
    size_t i = find_slot(m, hash_bytes(k, n), k, n);
    if (!m->hash[i]) return 0;
    *val = m->val[i];
    return 1;
}

const char *strmap_key(const strmap *m, const char *k, size_t n) {
    size_t i = find_slot(m, hash_bytes(k, n), k, n);
    return m->hash[i] ? m->pool + m->key_off[i] : NULL;
}

static void grow(strmap *m) {
    strmap old = *m;
    alloc_slots(m, old.cap * 2);
    size_t mask = m->cap - 1;
    for (size_t j = 0; j < old.cap; j++) {
        if (!old.hash[j]) continue;
        size_t i = (size_t)old.hash[j] & mask;
        while (m->hash[i]) i = (i + 1) & mask;
        m->hash[i] = old.hash[j];
        m->key_off[i] = old.key_off[j];
        m->key_len[i] = old.key_len[j];
        m->val[i] = old.val[j];
    }
    free(old.hash);
    free(old.key_off);
    free(old.key_len);
    free(old.val);
}

void strmap_put(strmap *m, const char *k, size_t n, int val) {
    uint64_t h = hash_bytes(k, n);
    size_t i = find_slot(m, h, k, n);
    if (m->hash[i]) {
        m->val[i] = val;
        return;
    }
    if (m->pool_n + n + 1 > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap : 1024;
        while (cap < m->pool_n + n + 1) cap *= 2;
        m->pool = xrealloc(m->pool, cap);
        m->pool_cap = cap;
    }
    memcpy(m->pool + m->pool_n, k, n);
    m->pool[m->pool_n + n] = 0;
    m->hash[i] = h;
    m->key_off[i] = m->pool_n;
    m->key_len[i] = (uint32_t)n;
    m->val[i] = val;
    m->pool_n += n + 1;
    if (++m->count * 2 > m->cap) grow(m);
}
