#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"

/* A header larger than this is not a model header but a corrupt length field. */
#define ST_MAX_HEADER (100u << 20)

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* Reads a JSON number that must be a non-negative integer below 2^53. */
static int json_uint(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (v < 0 || v > 9007199254740992.0 || v != (double)(int64_t)v) return -1;
    *out = (int64_t)v;
    return 0;
}

/* Parses and validates the header of the mapped file `fi`, appending its tensors. */
static int parse_header(st_archive *a, int fi) {
    const char *path = a->paths[fi];
    const fs_map *m = &a->maps[fi];
    if (m->size < 8) return gptq_fail("%s: truncated safetensors file (%zu bytes, no header length)", path, m->size);
    uint64_t hlen;
    memcpy(&hlen, m->data, 8);
    if (hlen > ST_MAX_HEADER) return gptq_fail("%s: header length %llu is implausible (corrupt file?)", path, (unsigned long long)hlen);
    if (hlen > m->size - 8)
        return gptq_fail("%s: header length %llu runs past the end of the file (%zu bytes)", path, (unsigned long long)hlen,
                         m->size);
    const char *hdr = (const char *)m->data + 8;
    const char *data = hdr + hlen;
    size_t data_size = m->size - 8 - hlen;

    cJSON *root = cJSON_ParseWithLength(hdr, hlen);
    if (!root) return gptq_fail("%s: header is not valid JSON", path);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gptq_fail("%s: header is not a JSON object", path);
    }
    int first = a->n_tensors, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        const char *name = it->string;
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsObject(it) || !cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo)) {
            rc = gptq_fail("%s: tensor '%s' lacks dtype/shape/data_offsets", path, name);
            break;
        }
        st_tensor t = {0};
        if (dtype_parse(jd->valuestring, &t.dtype) != 0) {
            rc = gptq_fail("%s: tensor '%s' has unknown dtype '%s'", path, name, jd->valuestring);
            break;
        }
        t.ndim = cJSON_GetArraySize(js);
        if (t.ndim > ST_MAX_DIMS) {
            rc = gptq_fail("%s: tensor '%s' has %d dimensions (max %d)", path, name, t.ndim, ST_MAX_DIMS);
            break;
        }
        t.numel = 1;
        int bad = 0;
        for (int d = 0; d < t.ndim; d++) {
            if (json_uint(cJSON_GetArrayItem(js, d), &t.shape[d]) != 0 || t.shape[d] > (1LL << 40)) bad = 1;
            else if (t.shape[d] && t.numel > (1LL << 50) / t.shape[d]) bad = 1;
            else t.numel *= t.shape[d];
        }
        if (bad) {
            rc = gptq_fail("%s: tensor '%s' has an invalid shape", path, name);
            break;
        }
        int64_t b, e;
        if (cJSON_GetArraySize(jo) != 2 || json_uint(cJSON_GetArrayItem(jo, 0), &b) != 0 ||
            json_uint(cJSON_GetArrayItem(jo, 1), &e) != 0 || e < b) {
            rc = gptq_fail("%s: tensor '%s' has invalid data_offsets", path, name);
            break;
        }
        if ((uint64_t)e > data_size) {
            rc = gptq_fail("%s: tensor '%s' data_offsets [%lld, %lld] lie outside the data (%zu bytes; truncated file?)", path,
                           name, (long long)b, (long long)e, data_size);
            break;
        }
        t.nbytes = (size_t)(e - b);
        if ((uint64_t)t.numel * dtype_size(t.dtype) != t.nbytes) {
            rc = gptq_fail("%s: tensor '%s' holds %zu bytes but its %s shape needs %llu", path, name, t.nbytes,
                           dtype_name(t.dtype), (unsigned long long)t.numel * dtype_size(t.dtype));
            break;
        }
        t.data = data + b;
        t.file_index = fi;
        t.name = xstrdup(name);
        a->tensors = xrealloc(a->tensors, sizeof(st_tensor) * (a->n_tensors + 1));
        a->tensors[a->n_tensors++] = t;
    }
    cJSON_Delete(root);
    if (rc != 0) return rc;

    /* Tensors of one file must not overlap (the format packs them back to back). */
    int n = a->n_tensors - first;
    if (n >= 2) { /* (with none, a->tensors may still be NULL) */
        st_tensor *tmp = xmalloc(sizeof(st_tensor) * n);
        memcpy(tmp, a->tensors + first, sizeof(st_tensor) * n);
        qsort(tmp, n, sizeof(st_tensor), cmp_by_offset);
        for (int i = 1; i < n; i++) {
            if ((const char *)tmp[i - 1].data + tmp[i - 1].nbytes > (const char *)tmp[i].data) {
                rc = gptq_fail("%s: tensors '%s' and '%s' overlap", path, tmp[i - 1].name, tmp[i].name);
                break;
            }
        }
        free(tmp);
        if (rc != 0) return rc;
    }

    /* Typed access (float, uint16_t, int32_t pointers) needs element alignment.  The map
     * is page aligned, so only the file's own layout can break it: a header length or a
     * preceding tensor that is not a multiple of the element size (hand-made files, or
     * writers older than the format's 8-byte header padding).  Such tensors get an
     * aligned copy instead of being read misaligned. */
    for (int i = first; i < a->n_tensors; i++) {
        st_tensor *t = &a->tensors[i];
        if (t->nbytes == 0 || (uintptr_t)t->data % dtype_size(t->dtype) == 0) continue;
        void *copy = xaligned_alloc(t->nbytes);
        memcpy(copy, t->data, t->nbytes);
        a->copies = xrealloc(a->copies, sizeof(void *) * (a->n_copies + 1));
        a->copies[a->n_copies++] = copy;
        t->data = copy;
    }
    return 0;
}

static int add_file(st_archive *a, const char *path) {
    a->paths = xrealloc(a->paths, sizeof(char *) * (a->n_files + 1));
    a->maps = xrealloc(a->maps, sizeof(fs_map) * (a->n_files + 1));
    a->paths[a->n_files] = xstrdup(path);
    fs_map *m = &a->maps[a->n_files];
    a->n_files++;
    if (fs_map_file(m, path) != 0) return -1;
    return parse_header(a, a->n_files - 1);
}

static int finish(st_archive *a) {
    if (a->n_tensors == 0) return 0; /* a->tensors is NULL: qsort must not see it */
    qsort(a->tensors, a->n_tensors, sizeof(st_tensor), cmp_tensor_name);
    for (int i = 1; i < a->n_tensors; i++)
        if (strcmp(a->tensors[i - 1].name, a->tensors[i].name) == 0)
            return gptq_fail("%s: tensor '%s' appears twice", a->paths[a->tensors[i].file_index], a->tensors[i].name);
    return 0;
}

int st_open_file(st_archive *a, const char *path) {
    memset(a, 0, sizeof *a);
    if (add_file(a, path) != 0 || finish(a) != 0) {
        st_close(a);
        return -1;
    }
    return 0;
}

int st_open_memory(st_archive *a, const char *name, const void *data, size_t n) {
    memset(a, 0, sizeof *a);
    a->paths = xmalloc(sizeof(char *));
    a->maps = xmalloc(sizeof(fs_map));
    a->paths[0] = xstrdup(name);
    a->maps[0] = (fs_map){0};
    a->n_files = 1;
    if (fs_map_copy(&a->maps[0], data, n) != 0 || parse_header(a, 0) != 0 || finish(a) != 0) {
        st_close(a);
        return -1;
    }
    return 0;
}

static int open_index(st_archive *a, const char *dir, const char *text, size_t len, const char *index_path) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return gptq_fail("%s: not valid JSON", index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = 0;
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return gptq_fail("%s: no \"weight_map\" object", index_path);
    }
    if (!wm->child) { /* else the model fails later with a message naming no file */
        cJSON_Delete(root);
        return gptq_fail("%s: \"weight_map\" names no tensors", index_path);
    }
    /* Open each distinct shard once, in order of first mention. */
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/') || strcmp(it->valuestring, "..") == 0) {
            rc = gptq_fail("%s: weight_map entry '%s' is not a file name", index_path, it->string);
            break;
        }
        int seen = 0;
        for (int f = 0; f < a->n_files && !seen; f++) {
            const char *base = strrchr(a->paths[f], '/');
            seen = strcmp(base ? base + 1 : a->paths[f], it->valuestring) == 0;
        }
        if (seen) continue;
        char *p = fs_join(dir, it->valuestring);
        rc = add_file(a, p);
        free(p);
        if (rc != 0) break;
    }
    if (rc == 0) rc = finish(a);
    /* Every tensor the index names must be in the shard it names. */
    if (rc == 0) {
        cJSON_ArrayForEach(it, wm) {
            const st_tensor *t = st_find(a, it->string);
            const char *base = t ? strrchr(a->paths[t->file_index], '/') : NULL;
            if (!t || strcmp(base ? base + 1 : a->paths[t->file_index], it->valuestring) != 0) {
                rc = gptq_fail("%s: tensor '%s' is not in %s", index_path, it->string, it->valuestring);
                break;
            }
        }
    }
    cJSON_Delete(root);
    return rc;
}

int st_open_dir(st_archive *a, const char *dir) {
    memset(a, 0, sizeof *a);
    char *index_path = fs_join(dir, "model.safetensors.index.json");
    int rc;
    if (fs_exists(index_path)) {
        size_t len;
        char *text = fs_read_all(index_path, &len);
        rc = text ? open_index(a, dir, text, len, index_path) : -1;
        free(text);
    } else {
        char *single = fs_join(dir, "model.safetensors");
        if (!fs_exists(single)) rc = gptq_fail("%s: no model.safetensors or model.safetensors.index.json", dir);
        else rc = add_file(a, single) == 0 ? finish(a) : -1;
        free(single);
    }
    free(index_path);
    if (rc != 0) st_close(a);
    return rc;
}

int st_open_index_json(st_archive *a, const char *dir, const char *json, size_t len, const char *index_path) {
    memset(a, 0, sizeof *a);
    int rc = open_index(a, dir, json, len, index_path);
    if (rc != 0) st_close(a);
    return rc;
}

void st_close(st_archive *a) {
    for (int i = 0; i < a->n_tensors; i++) free(a->tensors[i].name);
    for (int i = 0; i < a->n_files; i++) {
        fs_unmap(&a->maps[i]);
        free(a->paths[i]);
    }
    for (int i = 0; i < a->n_copies; i++) free(a->copies[i]);
    free(a->tensors), free(a->maps), free(a->paths), free(a->copies);
    memset(a, 0, sizeof *a);
}

const st_tensor *st_find(const st_archive *a, const char *name) {
    if (a->n_tensors == 0) return NULL; /* a->tensors is NULL: bsearch must not see it */
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, a->tensors, a->n_tensors, sizeof(st_tensor), cmp_tensor_name);
}

const st_tensor *st_require(const st_archive *a, const char *name, int ndim, const int64_t *shape) {
    const st_tensor *t = st_find(a, name);
    const char *where = a->n_files ? a->paths[0] : "safetensors";
    if (!t) {
        gptq_fail("%s: missing tensor '%s'", where, name);
        return NULL;
    }
    where = a->paths[t->file_index];
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        char want[128] = "", got[128] = "";
        for (int d = 0; d < ndim; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)shape[d]);
        for (int d = 0; d < t->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        gptq_fail("%s: tensor '%s' has shape [%s] but the config implies [%s]", where, name, got, want);
        return NULL;
    }
    return t;
}

void st_release(const st_archive *a, const void *data, size_t n) {
    const char *p = data;
    for (int f = 0; f < a->n_files; f++) {
        const char *base = a->maps[f].data;
        if (!base || p < base || p + n > base + a->maps[f].size) continue;
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        /* whole pages inside the range only: neighbours may still be in use */
        uintptr_t b = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1), e = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
        if (e > b) madvise((void *)b, e - b, MADV_DONTNEED);
        return;
    }
}

/* ---------------- writing ---------------- */

void st_writer_init(st_writer *w) { memset(w, 0, sizeof *w); }

static st_entry *writer_push(st_writer *w, const char *name, gptq_dtype dt, int ndim, const int64_t *shape) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->entries = xrealloc(w->entries, sizeof(st_entry) * w->cap);
    }
    st_entry *e = &w->entries[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dt;
    e->ndim = ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        e->shape[d] = shape[d];
        numel *= (size_t)shape[d];
    }
    e->nbytes = numel * dtype_size(dt);
    return e;
}

void st_writer_add(st_writer *w, const char *name, gptq_dtype dt, int ndim, const int64_t *shape, const void *data) {
    writer_push(w, name, dt, ndim, shape)->data = data;
}

void st_writer_add_fill(st_writer *w, const char *name, gptq_dtype dt, int ndim, const int64_t *shape, st_fill_fn fill,
                        void *ctx) {
    st_entry *e = writer_push(w, name, dt, ndim, shape);
    e->fill = fill;
    e->fill_ctx = ctx;
}

void st_writer_meta(st_writer *w, const char *key, const char *value) {
    w->meta_keys = xrealloc(w->meta_keys, sizeof(char *) * (w->n_meta + 1));
    w->meta_values = xrealloc(w->meta_values, sizeof(char *) * (w->n_meta + 1));
    w->meta_keys[w->n_meta] = xstrdup(key);
    w->meta_values[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

/* Larger elements first, then by name: back-to-back tensors then all start aligned to
 * their element size (sizes are multiples of it, the header is padded to 8). */
static int cmp_entry_name(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    size_t sx = dtype_size(x->dtype), sy = dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

int st_writer_write(st_writer *w, const char *path) {
    qsort(w->entries, w->n, sizeof(st_entry), cmp_entry_name);
    cJSON *root = cJSON_CreateObject();
    if (w->n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++) cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->entries[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", dtype_name(e->dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + e->nbytes)));
        off += e->nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t jlen = strlen(json);
    size_t padded = (jlen + 7) & ~(size_t)7; /* pad with spaces so the data starts 8-aligned */
    char *hdr = xmalloc(8 + padded);
    uint64_t hl = padded;
    memcpy(hdr, &hl, 8);
    memcpy(hdr + 8, json, jlen);
    memset(hdr + 8 + jlen, ' ', padded - jlen);
    free(json);

    fs_atomic out;
    if (fs_atomic_open(&out, path) != 0) {
        free(hdr);
        return -1;
    }
    int rc = fs_atomic_write(&out, hdr, 8 + padded);
    free(hdr);
    void *buf = NULL;
    size_t buf_cap = 0;
    for (int i = 0; i < w->n && rc == 0; i++) {
        const st_entry *e = &w->entries[i];
        if (e->data) {
            rc = fs_atomic_write(&out, e->data, e->nbytes);
        } else {
            if (e->nbytes > buf_cap) {
                free(buf);
                buf = xmalloc(buf_cap = e->nbytes);
            }
            rc = e->fill(e->fill_ctx, buf, e->nbytes);
            if (rc == 0) rc = fs_atomic_write(&out, buf, e->nbytes);
        }
    }
    free(buf);
    if (rc == 0) return fs_atomic_commit(&out);
    fs_atomic_abort(&out);
    return -1;
}

void st_writer_free(st_writer *w) {
    for (int i = 0; i < w->n; i++) free(w->entries[i].name);
    for (int i = 0; i < w->n_meta; i++) free(w->meta_keys[i]), free(w->meta_values[i]);
    free(w->entries), free(w->meta_keys), free(w->meta_values);
    memset(w, 0, sizeof *w);
}
