/* model.safetensors.index.json: the weight_map and its shards.  The shards it may name,
 * "a.safetensors" and "b.safetensors", are written once into a scratch directory. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "fuzz.h"
#include "io/safetensors.h"

static const char *shard_dir(void) {
    static char *dir;
    if (dir) return dir;
    const char *scratch = fuzz_scratch_dir();
    dir = fs_join(scratch, "index");
    if (fs_mkdirs(dir) != 0) fuzz_fail(__FILE__, __LINE__, "%s", gptq_last_error());
    static const float w[6] = {1, 2, 3, 4, 5, 6};
    static const uint16_t h[4] = {0x3c00, 0x4000, 0x4200, 0x4400};
    const char *names[2] = {"a.safetensors", "b.safetensors"};
    for (int s = 0; s < 2; s++) {
        st_writer wr;
        st_writer_init(&wr);
        if (s == 0) {
            st_writer_add(&wr, "model.embed_tokens.weight", DT_F32, 2, (int64_t[]){2, 3}, w);
            st_writer_add(&wr, "model.norm.weight", DT_F16, 1, (int64_t[]){4}, h);
        } else {
            st_writer_add(&wr, "lm_head.weight", DT_F32, 2, (int64_t[]){3, 2}, w);
        }
        char *p = fs_join(dir, names[s]);
        if (st_writer_write(&wr, p) != 0) fuzz_fail(__FILE__, __LINE__, "%s", gptq_last_error());
        free(p);
        st_writer_free(&wr);
    }
    return dir;
}

int fuzz_st_index(const uint8_t *data, size_t n) {
    const char *dir = shard_dir();
    st_archive a;
    if (st_open_index_json(&a, dir, (const char *)data, n, "model.safetensors.index.json") != 0) {
        FUZZ_ASSERT(gptq_last_error()[0], "failure without a message");
        FUZZ_ASSERT(a.n_files == 0 && a.n_tensors == 0, "failed open left state behind");
        return 0;
    }
    FUZZ_ASSERT(a.n_files >= 1 && a.n_files <= 2, "%d shards opened", a.n_files);
    for (int i = 0; i < a.n_tensors; i++) {
        const st_tensor *t = &a.tensors[i];
        FUZZ_ASSERT(t->file_index >= 0 && t->file_index < a.n_files, "bad file index");
        const char *base = a.maps[t->file_index].data;
        FUZZ_ASSERT((const char *)t->data >= base && (const char *)t->data + t->nbytes <= base + a.maps[t->file_index].size,
                    "tensor '%s' outside its shard", t->name);
    }
    st_close(&a);
    return 0;
}
