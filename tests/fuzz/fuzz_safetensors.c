/* A .safetensors file: header JSON, dtypes, shapes, offsets, overlaps, duplicates. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fuzz.h"
#include "io/safetensors.h"

int fuzz_safetensors(const uint8_t *data, size_t n) {
    st_archive a;
    if (st_open_memory(&a, "fuzz.safetensors", data, n) != 0) {
        FUZZ_ASSERT(gptq_last_error()[0], "failure without a message");
        return 0;
    }
    const char *base = a.maps[0].data;
    size_t size = a.maps[0].size;
    for (int i = 0; i < a.n_tensors; i++) {
        const st_tensor *t = &a.tensors[i];
        const char *p = t->data;
        int copied = 0;
        for (int c = 0; c < a.n_copies; c++) copied |= a.copies[c] == t->data;
        FUZZ_ASSERT(t->nbytes == 0 || copied || (p >= base + 8 && p + t->nbytes <= base + size), "tensor '%s' outside the file",
                    t->name);
        FUZZ_ASSERT(t->nbytes == 0 || (uintptr_t)p % dtype_size(t->dtype) == 0, "tensor '%s' misaligned", t->name);
        FUZZ_ASSERT((uint64_t)t->numel * dtype_size(t->dtype) == t->nbytes, "tensor '%s' size mismatch", t->name);
        FUZZ_ASSERT(st_find(&a, t->name) == t, "tensor '%s' not found by name", t->name);
        if (i) FUZZ_ASSERT(strcmp(a.tensors[i - 1].name, t->name) < 0, "tensors not sorted/unique");
        /* read the data as a consumer would (small tensors only, to keep executions fast) */
        if (t->numel <= 4096 && (t->dtype == DT_F32 || t->dtype == DT_F16 || t->dtype == DT_BF16)) {
            float *f = xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            convert_to_f32(f, t->data, t->dtype, (size_t)t->numel);
            free(f);
        }
        int64_t shape[ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        FUZZ_ASSERT(st_require(&a, t->name, t->ndim, shape) == t, "st_require rejects '%s'", t->name);
        st_release(&a, t->data, t->nbytes);
    }
    FUZZ_ASSERT(st_require(&a, "\x01no such tensor", 1, (int64_t[]){1}) == NULL, "found a missing tensor");
    st_close(&a);
    return 0;
}
