/* GGUF (llama.cpp's model file, version 3): a strict reader over a memory map and a
 * streaming, atomic writer.
 *
 * Layout (all little-endian):
 *   "GGUF" u32 version u64 n_tensors u64 n_kv
 *   n_kv × { string key, u32 value_type, value }
 *   n_tensors × { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   zero padding to `alignment` (general.alignment, default 32)
 *   tensor data; each tensor at data_start + offset, offset a multiple of the alignment
 * A string is u64 length + bytes (no NUL); an array is u32 element type, u64 count,
 * elements.  ne[0] is the innermost (contiguous) dimension: an (out, in) row-major weight
 * is ne = {in, out}.
 *
 * The reader validates everything before anything is used: magic, version (2 or 3),
 * counts against the file size, every string and array inside the file, known value
 * types, no nested arrays, unique keys and tensor names, general.alignment (u32, a power
 * of two), 1..4 dims each > 0, known ggml types, ne[0] a multiple of the block size,
 * aligned offsets, data inside the file and tensors not overlapping.  A failure is one
 * error naming the file and the offending field. */
#ifndef GPTQ_IO_GGUF_H
#define GPTQ_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/fs.h"
#include "io/ggml_types.h"

typedef enum {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_NTYPES
} gguf_vtype;

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* One metadata entry. */
typedef struct {
    char *key;
    gguf_vtype type;     /* value type */
    gguf_vtype arr_type; /* element type when type == GGUF_ARRAY */
    uint64_t n;          /* element count of an array (1 for a scalar) */
    union {
        uint64_t u;
        int64_t i;
        double f;
    } num;               /* numeric or bool scalar, widened */
    char *str;           /* string scalar, NUL-terminated copy */
    const void *arr;     /* numeric array elements, in the file map (maybe unaligned) */
    char **strs;         /* (n) string array elements, NUL-terminated copies */
    uint64_t *str_lens;  /* (n) their byte lengths (a string may hold NUL bytes) */
} gguf_kv;

typedef struct {
    char *name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
    ggml_type type;
    uint64_t offset;           /* from the start of the data section */
    size_t nbytes;
    const void *data;          /* in the file map */
} gguf_tensor;

typedef struct gguf_file_s {
    char *path;
    fs_map map;
    uint32_t version;
    uint32_t alignment;
    int n_kv;
    gguf_kv *kv;        /* (n_kv) in file order */
    int n_tensors;
    gguf_tensor *tensors; /* (n_tensors) in file order */
    size_t data_start;  /* byte offset of the data section */
} gguf_file;

/* 1 if path is a regular file starting with the GGUF magic. */
int gguf_is_gguf(const char *path);
int gguf_open(gguf_file *g, const char *path);
void gguf_close(gguf_file *g);

const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
const char *gguf_vtype_name(gguf_vtype t);

/* Typed getters.  Absent keys: *out untouched and 0 returned when !required, else an
 * error.  Present keys of the wrong type or out of range are always errors (naming the file
 * and the key).  Integers accept any integer type whose value fits. */
int gguf_get_u32(const gguf_file *g, const char *key, int required, uint32_t *out);
int gguf_get_f32(const gguf_file *g, const char *key, int required, float *out);
int gguf_get_bool(const gguf_file *g, const char *key, int required, int *out);
int gguf_get_str(const gguf_file *g, const char *key, int required, const char **out);
/* An array of the given element type (with its count), or an error. */
const gguf_kv *gguf_get_arr(const gguf_file *g, const char *key, int required, gguf_vtype elem);
/* Element i of a numeric array as a double / int64. */
double gguf_arr_f(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i(const gguf_kv *kv, uint64_t i);

/* ---- writing ---- */

/* Produces the bytes of one tensor on demand (exactly nbytes into dst); 0 or -1. */
typedef int (*gguf_fill_fn)(void *ctx, void *dst, size_t nbytes);

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Metadata, in the order added.  A key added twice is an error at write time. */
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_w_f32(gguf_writer *w, const char *key, float v);
void gguf_w_bool(gguf_writer *w, const char *key, int v);
void gguf_w_str(gguf_writer *w, const char *key, const char *v);
/* String array; lens may be NULL (then strlen). */
void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *v, const uint64_t *lens, uint64_t n);
void gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
void gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* A tensor of type t with dims ne (n_dims, ne[0] innermost) whose bytes `fill` writes,
 * or (fill NULL) that are at `data` (borrowed until gguf_writer_write returns). */
void gguf_w_tensor(gguf_writer *w, const char *name, ggml_type t, int n_dims, const int64_t *ne, const void *data,
                   gguf_fill_fn fill, void *ctx);
/* Writes the file atomically (temporary name, then rename). */
int gguf_writer_write(gguf_writer *w, const char *path);

#endif
