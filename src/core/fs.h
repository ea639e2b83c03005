/* Small file-system helpers: whole-file reads, read-only memory maps, path joining,
 * and the write-to-temporary-then-rename discipline every output follows. */
#ifndef GPTQ_CORE_FS_H
#define GPTQ_CORE_FS_H

#include <stddef.h>
#include <stdio.h>

/* Reads a whole file into a NUL-terminated heap buffer. NULL + error on failure. */
char *fs_read_all(const char *path, size_t *len_out);

/* A read-only private mapping of a whole file. */
typedef struct {
    void *data;  /* NULL for an empty file */
    size_t size; /* bytes */
} fs_map;
int fs_map_file(fs_map *m, const char *path);
/* The same shape for bytes already in memory: a private anonymous mapping holding a copy,
 * released by fs_unmap like a file's (parsers of in-memory input, fuzzing). */
int fs_map_copy(fs_map *m, const void *data, size_t n);
void fs_unmap(fs_map *m);

/* "dir/name" in a fresh heap string. */
char *fs_join(const char *dir, const char *name);
int fs_exists(const char *path);
int fs_is_dir(const char *path);
/* mkdir -p. */
int fs_mkdirs(const char *path);
/* rm -rf (used for temporary output directories). */
int fs_remove_tree(const char *path);
/* Copies a file byte for byte. */
int fs_copy_file(const char *src, const char *dst);

/* Atomic file output: writes go to "<path>.tmp.<pid>", fs_atomic_commit fsyncs, closes
 * and renames it over <path>; fs_atomic_abort closes and deletes it.  A crash leaves only
 * the temporary name behind, never a file that looks complete. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp_path;
} fs_atomic;
int fs_atomic_open(fs_atomic *a, const char *path);
int fs_atomic_write(fs_atomic *a, const void *data, size_t n);
int fs_atomic_commit(fs_atomic *a);
void fs_atomic_abort(fs_atomic *a);

/* Writes n bytes to path atomically (temporary name, fsync, rename). */
int fs_write_file(const char *path, const void *data, size_t n);
/* The same for a file `name` inside directory `dir` holding a NUL-terminated text. */
int fs_write_text(const char *dir, const char *name, const char *text);

/* Wall-clock seconds (monotonic). */
double now_seconds(void);
/* Peak resident set size of this process in MiB. */
double peak_rss_mb(void);
/* Lowers the peak-RSS mark to the current RSS (Linux /proc/self/clear_refs), so that a
 * temporary buffer already freed (a bandwidth probe) stops counting; -1 if not possible. */
int peak_rss_reset(void);

#endif
