/* safetensors: reading (memory-mapped, strictly validated) and writing (streamed, atomic).
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"k": "v"}}
 * then the data buffer; offsets are relative to the start of the buffer. */
#ifndef GPTQ_IO_SAFETENSORS_H
#define GPTQ_IO_SAFETENSORS_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/fs.h"

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    gptq_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data; /* points into the file's memory map (or to an aligned copy, when
                       * the file places it at an offset that is not a multiple of the
                       * element size); always aligned to the element size */
    size_t nbytes;
    int file_index; /* which file of the archive holds it */
} st_tensor;

/* One or more safetensors files seen as a single set of named tensors. */
typedef struct {
    int n_files;
    char **paths;   /* (n_files) */
    fs_map *maps;   /* (n_files) */
    int n_tensors;
    st_tensor *tensors; /* (n_tensors), sorted by name */
    int n_copies;
    void **copies;      /* (n_copies) aligned heap copies of tensors whose bytes in the file
                         * are not aligned to their element size (see parse_header) */
} st_archive;

/* Opens one .safetensors file. */
int st_open_file(st_archive *a, const char *path);
/* Opens a model directory: model.safetensors.index.json (sharded) if present, else
 * model.safetensors. */
int st_open_dir(st_archive *a, const char *dir);
/* Parses a whole safetensors file held in memory (copied; `name` stands for its path in
 * errors).  Same checks as st_open_file. */
int st_open_memory(st_archive *a, const char *name, const void *data, size_t n);
/* Opens the shards named by the text of a model.safetensors.index.json (`index_path` names
 * it in errors) from directory dir: what st_open_dir does when the index exists. */
int st_open_index_json(st_archive *a, const char *dir, const char *json, size_t len, const char *index_path);
void st_close(st_archive *a);

/* NULL if absent. */
const st_tensor *st_find(const st_archive *a, const char *name);
/* Like st_find but fails with a message naming the file set if absent or if the shape
 * differs from the expected one (ndim values in `shape`). */
const st_tensor *st_require(const st_archive *a, const char *name, int ndim, const int64_t *shape);

/* Tells the kernel the pages of [data, data + n) inside one of the archive's maps are not
 * needed any more (they are read again from the file if touched), so that streaming
 * through a large checkpoint block by block keeps the resident set to about one block.
 * Pointers outside the maps are ignored. */
void st_release(const st_archive *a, const void *data, size_t n);

/* ---- writing ---- */

/* Produces the bytes of one tensor on demand, so that a multi-gigabyte checkpoint never
 * has to be in memory at once.  Writes exactly `nbytes` into dst; returns 0 or -1. */
typedef int (*st_fill_fn)(void *ctx, void *dst, size_t nbytes);

typedef struct {
    char *name;
    gptq_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const void *data; /* borrowed; or NULL when fill is set */
    st_fill_fn fill;
    void *fill_ctx;
} st_entry;

typedef struct {
    int n, cap;
    st_entry *entries;
    int n_meta;
    char **meta_keys, **meta_values;
} st_writer;

void st_writer_init(st_writer *w);
/* Adds a tensor whose bytes are at `data` (borrowed until st_writer_write returns). */
void st_writer_add(st_writer *w, const char *name, gptq_dtype dt, int ndim, const int64_t *shape, const void *data);
/* Adds a tensor whose bytes are produced by `fill` when written. */
void st_writer_add_fill(st_writer *w, const char *name, gptq_dtype dt, int ndim, const int64_t *shape, st_fill_fn fill,
                        void *ctx);
void st_writer_meta(st_writer *w, const char *key, const char *value);
/* Writes the file atomically (temporary name, then rename).  Header padded to 8 bytes
 * and tensors ordered by element size (largest first), then by name, as the reference
 * safetensors writer does, so that every tensor starts aligned to its element size. */
int st_writer_write(st_writer *w, const char *path);
void st_writer_free(st_writer *w);

#endif
