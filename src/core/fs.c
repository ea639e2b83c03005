#include "core/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

char *fs_read_all(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        gptq_fail("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        gptq_fail("%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

int fs_map_file(fs_map *m, const char *path) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return gptq_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return gptq_fail("%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gptq_fail("%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return gptq_fail("%s: cannot mmap: %s", path, strerror(errno));
        }
        m->data = p;
    }
    close(fd);
    return 0;
}

int fs_map_copy(fs_map *m, const void *data, size_t n) {
    m->data = NULL;
    m->size = n;
    if (n == 0) return 0;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        m->size = 0;
        return gptq_fail("cannot map %zu bytes: %s", n, strerror(errno));
    }
    memcpy(p, data, n);
    mprotect(p, n, PROT_READ);
    m->data = p;
    return 0;
}

void fs_unmap(fs_map *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

char *fs_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int fs_exists(const char *path) { return access(path, F_OK) == 0; }

int fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_mkdirs(const char *path) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return gptq_fail("%s: cannot create directory: %s", path, strerror(e));
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = gptq_fail("%s: cannot create directory: %s", path, strerror(errno));
    free(p);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int fs_remove_tree(const char *path) {
    if (!fs_exists(path)) return 0;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return gptq_fail("%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

int fs_write_file(const char *path, const void *data, size_t n) {
    fs_atomic a;
    if (fs_atomic_open(&a, path) != 0) return -1;
    if (fs_atomic_write(&a, data, n) != 0) {
        fs_atomic_abort(&a);
        return -1;
    }
    return fs_atomic_commit(&a);
}

int fs_write_text(const char *dir, const char *name, const char *text) {
    char *path = fs_join(dir, name);
    int rc = fs_write_file(path, text, strlen(text));
    free(path);
    return rc;
}

int fs_copy_file(const char *src, const char *dst) {
    size_t n;
    char *data = fs_read_all(src, &n);
    if (!data) return -1;
    int rc = fs_write_file(dst, data, n);
    free(data);
    return rc;
}

int fs_atomic_open(fs_atomic *a, const char *path) {
    char suffix[48];
    snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    a->path = xstrdup(path);
    a->tmp_path = xmalloc(strlen(path) + sizeof suffix);
    strcpy(a->tmp_path, path);
    strcat(a->tmp_path, suffix);
    a->f = fopen(a->tmp_path, "wb");
    if (!a->f) {
        int e = errno;
        free(a->path), free(a->tmp_path);
        a->path = a->tmp_path = NULL;
        return gptq_fail("%s: cannot create: %s", path, strerror(e));
    }
    return 0;
}

int fs_atomic_write(fs_atomic *a, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, a->f) != n) return gptq_fail("%s: write failed: %s", a->path, strerror(errno));
    return 0;
}

void fs_atomic_abort(fs_atomic *a) {
    if (a->f) fclose(a->f);
    if (a->tmp_path) unlink(a->tmp_path);
    free(a->path), free(a->tmp_path);
    a->f = NULL, a->path = a->tmp_path = NULL;
}

int fs_atomic_commit(fs_atomic *a) {
    int rc = 0;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0) rc = gptq_fail("%s: write failed: %s", a->path, strerror(errno));
    if (fclose(a->f) != 0 && rc == 0) rc = gptq_fail("%s: write failed: %s", a->path, strerror(errno));
    a->f = NULL;
    if (rc == 0 && rename(a->tmp_path, a->path) != 0) rc = gptq_fail("%s: cannot rename: %s", a->path, strerror(errno));
    if (rc != 0) unlink(a->tmp_path);
    free(a->path), free(a->tmp_path);
    a->path = a->tmp_path = NULL;
    return rc;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

int peak_rss_reset(void) {
    /* Linux: writing 5 to clear_refs sets the high-water mark to the current RSS */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? 0 : -1;
}
