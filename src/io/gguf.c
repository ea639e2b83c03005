/* GGUF reading and writing (see gguf.h). */
#include "io/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define GGUF_MAGIC "GGUF"

static const char *const vtype_names[GGUF_NTYPES] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                     "bool", "string", "array", "u64", "i64", "f64"};
static const int vtype_size[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(gguf_vtype t) { return (unsigned)t < GGUF_NTYPES ? vtype_names[t] : "?"; }

/* ---------------- reading ---------------- */

typedef struct {
    const unsigned char *p;
    size_t size, pos;
    const char *path;
    const char *what; /* the field being read, for errors */
} cursor;

static int need(cursor *c, size_t n) {
    if (n > c->size - c->pos)
        return gptq_fail("%s: truncated GGUF file: %s runs past the end of the file (offset %zu, %zu bytes)", c->path,
                         c->what, c->pos, c->size);
    return 0;
}

static int rd(cursor *c, void *dst, size_t n) {
    if (need(c, n)) return -1;
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

/* A string into a NUL-terminated heap copy. */
static int rd_str(cursor *c, char **out, uint64_t *len_out) {
    uint64_t n;
    *out = NULL;
    if (rd(c, &n, 8)) return -1;
    if (n > c->size - c->pos)
        return gptq_fail("%s: %s: string length %" PRIu64 " runs past the end of the file", c->path, c->what, n);
    char *s = xmalloc((size_t)n + 1);
    memcpy(s, c->p + c->pos, (size_t)n);
    s[n] = 0;
    c->pos += (size_t)n;
    *out = s;
    if (len_out) *len_out = n;
    return 0;
}

static int is_int_type(gguf_vtype t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 || t == GGUF_I32 ||
           t == GGUF_U64 || t == GGUF_I64;
}

static int is_signed(gguf_vtype t) { return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64; }

/* Reads one element of numeric type t at p into the union fields of kv. */
static void load_num(gguf_kv *kv, gguf_vtype t, const unsigned char *p) {
    switch (t) {
    case GGUF_U8: kv->num.u = p[0]; break;
    case GGUF_BOOL: kv->num.u = p[0] != 0; break;
    case GGUF_I8: kv->num.i = (int8_t)p[0]; break;
    case GGUF_U16: { uint16_t v; memcpy(&v, p, 2); kv->num.u = v; break; }
    case GGUF_I16: { int16_t v; memcpy(&v, p, 2); kv->num.i = v; break; }
    case GGUF_U32: { uint32_t v; memcpy(&v, p, 4); kv->num.u = v; break; }
    case GGUF_I32: { int32_t v; memcpy(&v, p, 4); kv->num.i = v; break; }
    case GGUF_U64: { uint64_t v; memcpy(&v, p, 8); kv->num.u = v; break; }
    case GGUF_I64: { int64_t v; memcpy(&v, p, 8); kv->num.i = v; break; }
    case GGUF_F32: { float v; memcpy(&v, p, 4); kv->num.f = v; break; }
    case GGUF_F64: { double v; memcpy(&v, p, 8); kv->num.f = v; break; }
    default: break;
    }
}

static int read_kv(cursor *c, gguf_kv *kv, int index) {
    char what[64];
    snprintf(what, sizeof what, "metadata entry %d", index);
    c->what = what;
    if (rd_str(c, &kv->key, NULL)) return -1;
    uint32_t t;
    c->what = kv->key;
    if (rd(c, &t, 4)) return -1;
    if (t >= GGUF_NTYPES) return gptq_fail("%s: metadata '%s' has unknown value type %u", c->path, kv->key, t);
    kv->type = (gguf_vtype)t;
    kv->n = 1;
    if (t == GGUF_STRING) return rd_str(c, &kv->str, NULL);
    if (t != GGUF_ARRAY) {
        if (need(c, (size_t)vtype_size[t])) return -1;
        load_num(kv, (gguf_vtype)t, c->p + c->pos);
        c->pos += (size_t)vtype_size[t];
        if (t == GGUF_BOOL && c->p[c->pos - 1] > 1)
            return gptq_fail("%s: metadata '%s': bool value %u is not 0 or 1", c->path, kv->key, c->p[c->pos - 1]);
        return 0;
    }
    uint32_t et;
    uint64_t n;
    if (rd(c, &et, 4) || rd(c, &n, 8)) return -1;
    if (et >= GGUF_NTYPES) return gptq_fail("%s: metadata '%s': array of unknown value type %u", c->path, kv->key, et);
    if (et == GGUF_ARRAY) return gptq_fail("%s: metadata '%s': nested arrays are not supported", c->path, kv->key);
    kv->arr_type = (gguf_vtype)et;
    kv->n = n;
    if (et == GGUF_STRING) {
        /* every string takes at least its 8-byte length */
        if (n > (c->size - c->pos) / 8)
            return gptq_fail("%s: metadata '%s': %" PRIu64 " strings cannot fit in the file", c->path, kv->key, n);
        kv->strs = xcalloc((size_t)n + 1, sizeof(char *));
        kv->str_lens = xcalloc((size_t)n + 1, sizeof(uint64_t));
        for (uint64_t i = 0; i < n; i++)
            if (rd_str(c, &kv->strs[i], &kv->str_lens[i])) return -1;
        return 0;
    }
    size_t es = (size_t)vtype_size[et];
    if (n > (c->size - c->pos) / es)
        return gptq_fail("%s: metadata '%s': array of %" PRIu64 " %s runs past the end of the file", c->path, kv->key, n,
                         vtype_names[et]);
    kv->arr = c->p + c->pos;
    c->pos += (size_t)n * es;
    if (et == GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const unsigned char *)kv->arr)[i] > 1)
                return gptq_fail("%s: metadata '%s': bool element %" PRIu64 " is not 0 or 1", c->path, kv->key, i);
    return 0;
}

static int read_tensor_info(cursor *c, gguf_tensor *t, int index) {
    char what[64];
    snprintf(what, sizeof what, "tensor info %d", index);
    c->what = what;
    if (rd_str(c, &t->name, NULL)) return -1;
    c->what = t->name;
    uint32_t nd, type;
    if (rd(c, &nd, 4)) return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return gptq_fail("%s: tensor '%s' has %u dimensions (expected 1..%d)", c->path, t->name, nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v;
        if (rd(c, &v, 8)) return -1;
        if (v == 0 || v > (uint64_t)INT64_MAX / numel)
            return gptq_fail("%s: tensor '%s' has bad dimension %u = %" PRIu64, c->path, t->name, d, v);
        t->ne[d] = (int64_t)v;
        numel *= v;
    }
    if (rd(c, &type, 4) || rd(c, &t->offset, 8)) return -1;
    const ggml_type_traits *tr = ggml_traits(type);
    if (!tr) return gptq_fail("%s: tensor '%s' has ggml type %u, which is not supported", c->path, t->name, type);
    t->type = (ggml_type)type;
    if (t->ne[0] % tr->block_size)
        return gptq_fail("%s: tensor '%s' (%s): row length %" PRId64 " is not a multiple of the block size %d", c->path,
                         t->name, tr->name, t->ne[0], tr->block_size);
    uint64_t rows = numel / (uint64_t)t->ne[0];
    uint64_t row_bytes = (uint64_t)(t->ne[0] / tr->block_size) * (uint64_t)tr->type_size;
    if (rows && row_bytes > UINT64_MAX / rows) return gptq_fail("%s: tensor '%s' is impossibly large", c->path, t->name);
    t->nbytes = (size_t)(rows * row_bytes);
    return 0;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int find_duplicate(char **names, int n, const char **dup) {
    char **s = xmalloc(sizeof(char *) * ((size_t)n + 1));
    memcpy(s, names, sizeof(char *) * (size_t)n);
    qsort(s, (size_t)n, sizeof(char *), name_cmp);
    int found = 0;
    for (int i = 1; i < n && !found; i++)
        if (strcmp(s[i - 1], s[i]) == 0) *dup = s[i], found = 1;
    free(s);
    return found;
}

typedef struct {
    uint64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

int gguf_is_gguf(const char *path) {
    if (!fs_exists(path) || fs_is_dir(path)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[4];
    int ok = fread(m, 1, 4, f) == 4 && memcmp(m, GGUF_MAGIC, 4) == 0;
    fclose(f);
    return ok;
}

int gguf_open(gguf_file *g, const char *path) {
    memset(g, 0, sizeof *g);
    g->path = xstrdup(path);
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (fs_map_file(&g->map, path)) goto fail;
    cursor c = {g->map.data, g->map.size, 0, path, "header"};
    char magic[4];
    if (g->map.size < 4 || memcmp(g->map.data, GGUF_MAGIC, 4) != 0) {
        gptq_fail("%s: not a GGUF file (no 'GGUF' magic)", path);
        goto fail;
    }
    c.pos = 4;
    (void)magic;
    uint64_t n_tensors, n_kv;
    if (rd(&c, &g->version, 4)) goto fail;
    if (g->version == 1) {
        gptq_fail("%s: GGUF version 1 is not supported (only 2 and 3)", path);
        goto fail;
    }
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0) gptq_fail("%s: big-endian GGUF files are not supported", path);
        else gptq_fail("%s: unsupported GGUF version %u (expected 3)", path, g->version);
        goto fail;
    }
    if (rd(&c, &n_tensors, 8) || rd(&c, &n_kv, 8)) goto fail;
    /* every tensor info takes >= 28 bytes, every metadata entry >= 13 */
    if (n_tensors > (c.size - c.pos) / 28 || n_kv > (c.size - c.pos) / 13) {
        gptq_fail("%s: header claims %" PRIu64 " tensors and %" PRIu64 " metadata entries, more than the file can hold",
                  path, n_tensors, n_kv);
        goto fail;
    }
    g->kv = xcalloc((size_t)n_kv + 1, sizeof(gguf_kv));
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int)i + 1;
        if (read_kv(&c, &g->kv[i], (int)i)) goto fail;
    }
    {
        char **keys = xmalloc(sizeof(char *) * ((size_t)n_kv + 1));
        for (int i = 0; i < g->n_kv; i++) keys[i] = g->kv[i].key;
        const char *dup = NULL;
        int d = find_duplicate(keys, g->n_kv, &dup);
        if (d) gptq_fail("%s: metadata key '%s' appears more than once", path, dup);
        free(keys);
        if (d) goto fail;
    }
    const gguf_kv *al = gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_U32) {
            gptq_fail("%s: general.alignment has type %s (expected u32)", path, gguf_vtype_name(al->type));
            goto fail;
        }
        if (al->num.u == 0 || (al->num.u & (al->num.u - 1)) || al->num.u > (1u << 20)) {
            gptq_fail("%s: general.alignment %" PRIu64 " is not a power of two (up to 2^20)", path, al->num.u);
            goto fail;
        }
        g->alignment = (uint32_t)al->num.u;
    }
    g->tensors = xcalloc((size_t)n_tensors + 1, sizeof(gguf_tensor));
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int)i + 1;
        if (read_tensor_info(&c, &g->tensors[i], (int)i)) goto fail;
    }
    {
        char **names = xmalloc(sizeof(char *) * ((size_t)n_tensors + 1));
        for (int i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
        const char *dup = NULL;
        int d = find_duplicate(names, g->n_tensors, &dup);
        if (d) gptq_fail("%s: tensor '%s' appears more than once", path, dup);
        free(names);
        if (d) goto fail;
    }
    size_t start = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors > 0 && start > c.size) {
        gptq_fail("%s: truncated GGUF file: no data section after the header", path);
        goto fail;
    }
    g->data_start = start;
    size_t data_size = c.size > start ? c.size - start : 0;
    span *sp = xmalloc(sizeof(span) * ((size_t)g->n_tensors + 1));
    for (int i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment) {
            gptq_fail("%s: tensor '%s' offset %" PRIu64 " is not a multiple of the alignment %u", path, t->name, t->offset,
                      g->alignment);
            free(sp);
            goto fail;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            gptq_fail("%s: tensor '%s' data (offset %" PRIu64 ", %zu bytes) runs past the end of the file", path, t->name,
                      t->offset, t->nbytes);
            free(sp);
            goto fail;
        }
        t->data = (const unsigned char *)g->map.data + start + t->offset;
        sp[i] = (span){t->offset, t->offset + t->nbytes, i};
    }
    qsort(sp, (size_t)g->n_tensors, sizeof(span), span_cmp);
    for (int i = 1; i < g->n_tensors; i++)
        if (sp[i].begin < sp[i - 1].end) {
            gptq_fail("%s: tensors '%s' and '%s' overlap", path, g->tensors[sp[i - 1].index].name,
                      g->tensors[sp[i].index].name);
            free(sp);
            goto fail;
        }
    free(sp);
    return 0;
fail:
    gguf_close(g);
    return -1;
}

void gguf_close(gguf_file *g) {
    for (int i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        free(kv->key);
        free(kv->str);
        if (kv->strs)
            for (uint64_t j = 0; j < kv->n; j++) free(kv->strs[j]);
        free(kv->strs);
        free(kv->str_lens);
    }
    free(g->kv);
    for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    fs_unmap(&g->map);
    free(g->path);
    memset(g, 0, sizeof *g);
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static const gguf_kv *get(const gguf_file *g, const char *key, int required, int *err) {
    *err = 0;
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv && required) *err = gptq_fail("%s: metadata '%s' is missing", g->path, key);
    return kv;
}

int gguf_get_u32(const gguf_file *g, const char *key, int required, uint32_t *out) {
    int err;
    const gguf_kv *kv = get(g, key, required, &err);
    if (!kv) return err;
    if (!is_int_type(kv->type))
        return gptq_fail("%s: metadata '%s' has type %s (expected an integer)", g->path, key, gguf_vtype_name(kv->type));
    if (is_signed(kv->type) ? (kv->num.i < 0 || kv->num.i > (int64_t)UINT32_MAX) : kv->num.u > UINT32_MAX)
        return gptq_fail("%s: metadata '%s' is out of range", g->path, key);
    *out = is_signed(kv->type) ? (uint32_t)kv->num.i : (uint32_t)kv->num.u;
    return 0;
}

int gguf_get_f32(const gguf_file *g, const char *key, int required, float *out) {
    int err;
    const gguf_kv *kv = get(g, key, required, &err);
    if (!kv) return err;
    if (kv->type != GGUF_F32 && kv->type != GGUF_F64)
        return gptq_fail("%s: metadata '%s' has type %s (expected f32)", g->path, key, gguf_vtype_name(kv->type));
    *out = (float)kv->num.f;
    return 0;
}

int gguf_get_bool(const gguf_file *g, const char *key, int required, int *out) {
    int err;
    const gguf_kv *kv = get(g, key, required, &err);
    if (!kv) return err;
    if (kv->type != GGUF_BOOL)
        return gptq_fail("%s: metadata '%s' has type %s (expected bool)", g->path, key, gguf_vtype_name(kv->type));
    *out = (int)kv->num.u;
    return 0;
}

int gguf_get_str(const gguf_file *g, const char *key, int required, const char **out) {
    int err;
    const gguf_kv *kv = get(g, key, required, &err);
    if (!kv) return err;
    if (kv->type != GGUF_STRING)
        return gptq_fail("%s: metadata '%s' has type %s (expected string)", g->path, key, gguf_vtype_name(kv->type));
    *out = kv->str;
    return 0;
}

const gguf_kv *gguf_get_arr(const gguf_file *g, const char *key, int required, gguf_vtype elem) {
    int err;
    const gguf_kv *kv = get(g, key, required, &err);
    if (!kv) return NULL;
    if (kv->type != GGUF_ARRAY || kv->arr_type != elem) {
        gptq_fail("%s: metadata '%s' has type %s%s%s (expected an array of %s)", g->path, key, gguf_vtype_name(kv->type),
                  kv->type == GGUF_ARRAY ? " of " : "", kv->type == GGUF_ARRAY ? gguf_vtype_name(kv->arr_type) : "",
                  gguf_vtype_name(elem));
        return NULL;
    }
    return kv;
}

double gguf_arr_f(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp;
    load_num(&tmp, kv->arr_type, (const unsigned char *)kv->arr + i * (uint64_t)vtype_size[kv->arr_type]);
    if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) return tmp.num.f;
    return is_signed(kv->arr_type) ? (double)tmp.num.i : (double)tmp.num.u;
}

int64_t gguf_arr_i(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp;
    load_num(&tmp, kv->arr_type, (const unsigned char *)kv->arr + i * (uint64_t)vtype_size[kv->arr_type]);
    if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) return (int64_t)tmp.num.f;
    return is_signed(kv->arr_type) ? tmp.num.i : (int64_t)tmp.num.u;
}

/* ---------------- writing ---------------- */

typedef struct {
    char *name;
    ggml_type type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    size_t nbytes;
    uint64_t offset;
    const void *data;
    gguf_fill_fn fill;
    void *ctx;
} w_tensor;

struct gguf_writer {
    unsigned char *kv; /* serialized metadata */
    size_t kv_len, kv_cap;
    int n_kv;
    char **keys;
    int n_t, cap_t;
    w_tensor *t;
    int bad; /* a tensor was added with bad dims/type: reported at write time */
    char bad_msg[256];
};

gguf_writer *gguf_writer_new(void) { return xcalloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    free(w->kv);
    for (int i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static void put(gguf_writer *w, const void *p, size_t n) {
    if (w->kv_len + n > w->kv_cap) {
        w->kv_cap = (w->kv_len + n) * 2 + 256;
        w->kv = xrealloc(w->kv, w->kv_cap);
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_str_n(gguf_writer *w, const char *s, uint64_t n) {
    put(w, &n, 8);
    put(w, s, (size_t)n);
}

static void put_key(gguf_writer *w, const char *key, gguf_vtype t) {
    w->keys = xrealloc(w->keys, sizeof(char *) * (size_t)(w->n_kv + 1));
    w->keys[w->n_kv++] = xstrdup(key);
    put_str_n(w, key, strlen(key));
    uint32_t u = t;
    put(w, &u, 4);
}

void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v) { put_key(w, key, GGUF_U32), put(w, &v, 4); }
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v) { put_key(w, key, GGUF_I32), put(w, &v, 4); }
void gguf_w_f32(gguf_writer *w, const char *key, float v) { put_key(w, key, GGUF_F32), put(w, &v, 4); }
void gguf_w_bool(gguf_writer *w, const char *key, int v) {
    unsigned char b = v != 0;
    put_key(w, key, GGUF_BOOL), put(w, &b, 1);
}
void gguf_w_str(gguf_writer *w, const char *key, const char *v) { put_key(w, key, GGUF_STRING), put_str_n(w, v, strlen(v)); }

static void put_arr_head(gguf_writer *w, const char *key, gguf_vtype et, uint64_t n) {
    put_key(w, key, GGUF_ARRAY);
    uint32_t u = et;
    put(w, &u, 4);
    put(w, &n, 8);
}

void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *v, const uint64_t *lens, uint64_t n) {
    put_arr_head(w, key, GGUF_STRING, n);
    for (uint64_t i = 0; i < n; i++) put_str_n(w, v[i], lens ? lens[i] : strlen(v[i]));
}

void gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    put_arr_head(w, key, GGUF_F32, n);
    put(w, v, (size_t)n * 4);
}

void gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    put_arr_head(w, key, GGUF_I32, n);
    put(w, v, (size_t)n * 4);
}

void gguf_w_tensor(gguf_writer *w, const char *name, ggml_type t, int n_dims, const int64_t *ne, const void *data,
                   gguf_fill_fn fill, void *ctx) {
    const ggml_type_traits *tr = ggml_traits(t);
    if (!w->bad) {
        if (!tr) w->bad = snprintf(w->bad_msg, sizeof w->bad_msg, "tensor '%s': unknown ggml type %d", name, (int)t);
        else if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            w->bad = snprintf(w->bad_msg, sizeof w->bad_msg, "tensor '%s': %d dimensions", name, n_dims);
        else if (ne[0] % tr->block_size)
            w->bad = snprintf(w->bad_msg, sizeof w->bad_msg, "tensor '%s': row length %lld is not a multiple of %s's block size %d",
                              name, (long long)ne[0], tr->name, tr->block_size);
        if (w->bad) return;
    } else {
        return;
    }
    if (w->n_t == w->cap_t) w->t = xrealloc(w->t, sizeof(w_tensor) * (size_t)(w->cap_t = w->cap_t * 2 + 16));
    w_tensor *e = &w->t[w->n_t++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->type = t;
    e->n_dims = n_dims;
    int64_t rows = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) e->ne[d] = d < n_dims ? ne[d] : 1;
    for (int d = 1; d < n_dims; d++) rows *= ne[d];
    e->nbytes = ggml_row_size(t, ne[0]) * (size_t)rows;
    e->data = data;
    e->fill = fill;
    e->ctx = ctx;
}

static int write_pad(fs_atomic *a, size_t pos, uint32_t align) {
    static const unsigned char zeros[64] = {0};
    size_t pad = (align - pos % align) % align;
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        if (fs_atomic_write(a, zeros, k)) return -1;
        pad -= k;
    }
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path) {
    if (w->bad) return gptq_fail("%s: %s", path, w->bad_msg);
    const char *dup = NULL;
    if (find_duplicate(w->keys, w->n_kv, &dup)) return gptq_fail("%s: metadata key '%s' written twice", path, dup);
    char **names = xmalloc(sizeof(char *) * ((size_t)w->n_t + 1));
    for (int i = 0; i < w->n_t; i++) names[i] = w->t[i].name;
    int d = find_duplicate(names, w->n_t, &dup);
    free(names);
    if (d) return gptq_fail("%s: tensor '%s' written twice", path, dup);
    const uint32_t align = GGUF_DEFAULT_ALIGNMENT;

    /* header: magic, version, counts, metadata, tensor infos */
    gguf_writer hdr = {0};
    uint32_t version = 3;
    uint64_t nt = (uint64_t)w->n_t, nkv = (uint64_t)w->n_kv;
    put(&hdr, GGUF_MAGIC, 4);
    put(&hdr, &version, 4);
    put(&hdr, &nt, 8);
    put(&hdr, &nkv, 8);
    put(&hdr, w->kv, w->kv_len);
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        w_tensor *e = &w->t[i];
        put_str_n(&hdr, e->name, strlen(e->name));
        uint32_t nd = (uint32_t)e->n_dims, ty = e->type;
        put(&hdr, &nd, 4);
        for (int k = 0; k < e->n_dims; k++) {
            uint64_t v = (uint64_t)e->ne[k];
            put(&hdr, &v, 8);
        }
        put(&hdr, &ty, 4);
        e->offset = off;
        put(&hdr, &off, 8);
        off += (e->nbytes + align - 1) / align * align;
    }
    fs_atomic a;
    if (fs_atomic_open(&a, path)) {
        free(hdr.kv);
        return -1;
    }
    int rc = fs_atomic_write(&a, hdr.kv, hdr.kv_len) || write_pad(&a, hdr.kv_len, align);
    free(hdr.kv);
    for (int i = 0; i < w->n_t && !rc; i++) {
        w_tensor *e = &w->t[i];
        if (e->fill) {
            void *buf = xmalloc(e->nbytes ? e->nbytes : 1);
            rc = e->fill(e->ctx, buf, e->nbytes) != 0;
            if (rc) gptq_fail_context("%s: tensor '%s'", path, e->name);
            else rc = fs_atomic_write(&a, buf, e->nbytes) != 0;
            free(buf);
        } else {
            rc = fs_atomic_write(&a, e->data, e->nbytes) != 0;
        }
        if (!rc) rc = write_pad(&a, e->nbytes, align) != 0;
    }
    if (rc) {
        fs_atomic_abort(&a);
        return -1;
    }
    return fs_atomic_commit(&a);
}
