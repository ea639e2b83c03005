/* BPE vocabulary, merges and the per-word merge loop (see bpe.h). */
#include "text/bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/utf8.h"

struct bpe_sym {
    int id;
    int prev, next; /* neighbours, -1 at the ends */
    size_t len;     /* bytes of the word covered; 0 once merged into its left neighbour */
};

struct bpe_merge {
    int32_t rank, new_id;
    int pos;
};

static size_t pair_slot(const bpe_model *m, uint64_t key) {
    size_t mask = m->mcap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    while (m->mrank[i] >= 0 && m->mkey[i] != key) i = (i + 1) & mask;
    return i;
}

static int pair_get(const bpe_model *m, int a, int b, int32_t *rank, int32_t *new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_slot(m, key);
    if (m->mrank[i] < 0) return 0;
    *rank = m->mrank[i];
    *new_id = m->mnew[i];
    return 1;
}

int bpe_token_id(const bpe_model *m, const char *tok, size_t n) {
    int id;
    return strmap_get(&m->vocab, tok, n, &id) ? id : -1;
}

static int load_vocab(bpe_model *m, const cJSON *vocab, const char *path) {
    if (!cJSON_IsObject(vocab)) return gptq_fail("%s: model.vocab is missing or not an object", path);
    int n = cJSON_GetArraySize(vocab);
    strmap_init(&m->vocab, (size_t)n);
    int max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e8 || e->valuedouble != (int)e->valuedouble) {
            char esc[96];
            return gptq_fail("%s: model.vocab entry \"%s\" has no valid id", path,
                             str_escape(e->string ? e->string : "", esc, sizeof esc));
        }
        int id = (int)e->valuedouble;
        strmap_put(&m->vocab, e->string, strlen(e->string), id);
        if (id > max_id) max_id = id;
    }
    m->vocab_count = (int)m->vocab.count;
    m->n_ids = max_id + 1;
    m->id_tok = xcalloc((size_t)m->n_ids + 1, sizeof *m->id_tok);
    for (size_t i = 0; i < m->vocab.cap; i++)
        if (m->vocab.hash[i]) m->id_tok[m->vocab.val[i]] = m->vocab.pool + m->vocab.key_off[i];
    return 0;
}

static int add_merge(bpe_model *m, const char *a, const char *b, int rank, const char *path) {
    int ia = bpe_token_id(m, a, strlen(a)), ib = bpe_token_id(m, b, strlen(b));
    char e1[96];
    if (ia < 0 || ib < 0)
        return gptq_fail("%s: merge %d refers to \"%s\", which is not in the vocabulary", path, rank,
                         str_escape(ia < 0 ? a : b, e1, sizeof e1));
    size_t plen = m->prefix ? strlen(m->prefix) : 0;
    size_t la = strlen(a), lb = strlen(b);
    if (plen > lb) plen = lb;
    char *joined = xmalloc(la + lb + 1);
    memcpy(joined, a, la);
    memcpy(joined + la, b + plen, lb - plen);
    joined[la + lb - plen] = 0;
    int inew = bpe_token_id(m, joined, la + lb - plen);
    if (inew < 0) {
        gptq_fail("%s: merge %d gives \"%s\", which is not in the vocabulary", path, rank,
                  str_escape(joined, e1, sizeof e1));
        free(joined);
        return -1;
    }
    free(joined);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    size_t i = pair_slot(m, key); /* a repeated pair keeps its last rank, as a HashMap collect does */
    m->mkey[i] = key;
    m->mrank[i] = rank;
    m->mnew[i] = inew;
    return 0;
}

static int load_merges(bpe_model *m, const cJSON *merges, const char *path) {
    if (!cJSON_IsArray(merges)) return gptq_fail("%s: model.merges is missing or not an array", path);
    int n = cJSON_GetArraySize(merges);
    m->mcap = 16;
    while (m->mcap < (size_t)n * 2 + 16) m->mcap *= 2;
    m->mkey = xmalloc(m->mcap * sizeof *m->mkey);
    m->mrank = xmalloc(m->mcap * sizeof *m->mrank);
    m->mnew = xmalloc(m->mcap * sizeof *m->mnew);
    memset(m->mrank, 0xff, m->mcap * sizeof *m->mrank);
    int rank = 0;
    for (const cJSON *e = merges->child; e; e = e->next, rank++) {
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring;
            if (strncmp(s, "#version", 8) == 0) continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                char e[96];
                return gptq_fail("%s: merge %d (\"%s\") is not two tokens separated by one space", path, rank,
                                 str_escape(s, e, sizeof e));
            }
            char *a = xmalloc((size_t)(sp - s) + 1);
            memcpy(a, s, (size_t)(sp - s));
            a[sp - s] = 0;
            int rc = add_merge(m, a, sp + 1, rank, path);
            free(a);
            if (rc) return -1;
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            if (add_merge(m, e->child->valuestring, e->child->next->valuestring, rank, path)) return -1;
        } else {
            return gptq_fail("%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", path, rank);
        }
    }
    return 0;
}

static char *opt_string(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring[0] ? xstrdup(v->valuestring) : NULL;
}

static int opt_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

int bpe_load(bpe_model *m, const cJSON *model, const char *path) {
    memset(m, 0, sizeof *m);
    m->unk_id = -1;
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0 && dropout->valuedouble < 1)
        return gptq_fail("%s: BPE dropout %g is not supported (it makes encoding random)", path, dropout->valuedouble);
    m->fuse_unk = opt_bool(model, "fuse_unk", 0);
    m->byte_fallback = opt_bool(model, "byte_fallback", 0);
    m->ignore_merges = opt_bool(model, "ignore_merges", 0);
    m->prefix = opt_string(model, "continuing_subword_prefix");
    m->suffix = opt_string(model, "end_of_word_suffix");
    if (load_vocab(m, cJSON_GetObjectItemCaseSensitive(model, "vocab"), path)) return -1;
    if (load_merges(m, cJSON_GetObjectItemCaseSensitive(model, "merges"), path)) return -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) m->unk_id = bpe_token_id(m, unk->valuestring, strlen(unk->valuestring));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = bpe_token_id(m, name, 6);
    }
    return 0;
}

void bpe_free(bpe_model *m) {
    strmap_free(&m->vocab);
    free(m->id_tok);
    free(m->mkey);
    free(m->mrank);
    free(m->mnew);
    free(m->prefix);
    free(m->suffix);
    memset(m, 0, sizeof *m);
}

void bpe_scratch_free(bpe_scratch *s) {
    free(s->sym);
    free(s->heap);
    buf_free(&s->tmp);
    memset(s, 0, sizeof *s);
}

/* ---- the merge loop: a min-heap on (rank, position) ---- */

static int merge_less(const struct bpe_merge *a, const struct bpe_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(bpe_scratch *s, size_t *n, struct bpe_merge x) {
    if (*n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 64;
        s->heap = xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&x, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = x;
}

static struct bpe_merge heap_pop(bpe_scratch *s, size_t *n) {
    struct bpe_merge top = s->heap[0], x = s->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!merge_less(&s->heap[c], &x)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (*n) s->heap[i] = x;
    return top;
}

static void add_sym(bpe_scratch *s, size_t *n, int id, size_t len) {
    if (*n == s->sym_cap) {
        s->sym_cap = s->sym_cap ? 2 * s->sym_cap : 64;
        s->sym = xrealloc(s->sym, s->sym_cap * sizeof *s->sym);
    }
    s->sym[*n] = (struct bpe_sym){id, (int)*n - 1, (int)*n + 1, len};
    (*n)++;
}

/* The initial symbols of a word: one per character, as `tokenizers` BPE::merge_word. */
static size_t initial_symbols(const bpe_model *m, const char *w, size_t n, bpe_scratch *s) {
    size_t ns = 0;
    int unk_pending = 0;
    size_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        size_t clen = (size_t)utf8_len(w + i, n - i);
        int first = i == 0, last = i + clen == n;
        int id;
        if ((!m->prefix || first) && (!m->suffix || !last)) {
            id = bpe_token_id(m, w + i, clen);
        } else {
            s->tmp.n = 0;
            if (m->prefix && !first) buf_append(&s->tmp, m->prefix, strlen(m->prefix));
            buf_append(&s->tmp, w + i, clen);
            if (m->suffix && last) buf_append(&s->tmp, m->suffix, strlen(m->suffix));
            id = bpe_token_id(m, s->tmp.p, s->tmp.n);
        }
        if (id >= 0) {
            if (unk_pending) {
                add_sym(s, &ns, m->unk_id, unk_len);
                unk_pending = 0;
            }
            add_sym(s, &ns, id, clen);
        } else {
            int fell_back = 0;
            if (m->byte_fallback) {
                /* the bytes of the (possibly prefixed) character; a pending <unk> stays
                 * pending across them, as in `tokenizers` */
                const char *src = w + i;
                size_t sn = clen;
                if ((m->prefix && !first) || (m->suffix && last)) {
                    src = s->tmp.p;
                    sn = s->tmp.n;
                }
                size_t k = 0;
                while (k < sn && m->byte_id[(unsigned char)src[k]] >= 0) k++;
                if (k == sn) {
                    for (k = 0; k < sn; k++) add_sym(s, &ns, m->byte_id[(unsigned char)src[k]], 1);
                    fell_back = 1;
                }
            }
            if (!fell_back && m->unk_id >= 0) {
                if (unk_pending && m->fuse_unk) {
                    unk_len += clen;
                } else {
                    if (unk_pending) add_sym(s, &ns, m->unk_id, unk_len);
                    unk_pending = 1;
                    unk_len = clen;
                }
            }
        }
        i += clen;
    }
    if (unk_pending) add_sym(s, &ns, m->unk_id, unk_len);
    if (ns) s->sym[ns - 1].next = -1;
    return ns;
}

void bpe_word(const bpe_model *m, const char *w, size_t n, bpe_scratch *s, tok_ids *out) {
    if (m->ignore_merges) {
        int id = bpe_token_id(m, w, n);
        if (id >= 0) {
            ids_push(out, id);
            return;
        }
    }
    size_t ns = initial_symbols(m, w, n, s);
    size_t nh = 0;
    int32_t rank, new_id;
    for (size_t i = 0; i + 1 < ns; i++)
        if (pair_get(m, s->sym[i].id, s->sym[i + 1].id, &rank, &new_id))
            heap_push(s, &nh, (struct bpe_merge){rank, new_id, (int)i});
    while (nh) {
        struct bpe_merge top = heap_pop(s, &nh);
        struct bpe_sym *cur = &s->sym[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int next = cur->next;
        struct bpe_sym right = s->sym[next];
        /* skip entries made stale by an earlier merge */
        if (!pair_get(m, cur->id, right.id, &rank, &new_id) || new_id != top.new_id) continue;
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        s->sym[next].len = 0;
        if (right.next >= 0) s->sym[right.next].prev = top.pos;
        if (cur->prev >= 0 && pair_get(m, s->sym[cur->prev].id, cur->id, &rank, &new_id))
            heap_push(s, &nh, (struct bpe_merge){rank, new_id, cur->prev});
        if (cur->next >= 0 && pair_get(m, cur->id, s->sym[cur->next].id, &rank, &new_id))
            heap_push(s, &nh, (struct bpe_merge){rank, new_id, top.pos});
    }
    for (size_t i = 0; i < ns; i++)
        if (s->sym[i].len) ids_push(out, s->sym[i].id);
}
