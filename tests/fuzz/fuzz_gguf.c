/* A GGUF file (llama.cpp's format): header, metadata of every value type, tensor infos,
 * alignment, offsets; where the reader accepts it, the model loader (architecture keys,
 * shapes, block types, tokenizer metadata) runs on it too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "fuzz.h"
#include "io/gguf.h"
#include "model/llama.h"
#include "text/tokenizer.h"

int fuzz_gguf(const uint8_t *data, size_t n) {
    /* the reader maps a file: write the input to one in the scratch directory */
    char path[320];
    snprintf(path, sizeof path, "%s/fuzz.gguf", fuzz_scratch_dir());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (n) fwrite(data, 1, n, f);
    fclose(f);
    gguf_file g;
    if (gguf_open(&g, path) != 0) {
        FUZZ_ASSERT(gptq_last_error()[0], "failure without a message");
        return 0;
    }
    const char *base = g.map.data;
    for (int i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        const char *p = t->data;
        FUZZ_ASSERT(t->nbytes == 0 || (p >= base + g.data_start && p + t->nbytes <= base + g.map.size),
                    "tensor '%s' outside the file", t->name);
        FUZZ_ASSERT(t->offset % g.alignment == 0, "tensor '%s' misaligned", t->name);
        FUZZ_ASSERT(gguf_find_tensor(&g, t->name) == t, "tensor '%s' not found by name", t->name);
    }
    for (int i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        FUZZ_ASSERT(gguf_find(&g, kv->key) == kv, "key '%s' not found", kv->key);
        if (kv->type == GGUF_ARRAY && kv->n && kv->arr_type != GGUF_STRING && kv->arr_type != GGUF_ARRAY) {
            volatile double a = gguf_arr_f(kv, 0), b = gguf_arr_f(kv, kv->n - 1);
            (void)a, (void)b;
        }
    }
    gguf_close(&g);
    /* the whole model path: metadata checks, tensors against the shapes, dequantization */
    llama_model m;
    if (llama_load_ex(&m, path, 0) == 0) {
        FUZZ_ASSERT(m.cfg.n_layers > 0 && m.cfg.dim > 0 && m.cfg.vocab_size > 0, "loaded a model with empty sizes");
        llama_free(&m);
    } else {
        FUZZ_ASSERT(gptq_last_error()[0], "model failure without a message");
    }
    tokenizer *tok = tokenizer_load(path);
    if (tok) {
        int *ids = NULL;
        int k = tokenizer_encode(tok, "Hello world", 11, 1, &ids);
        FUZZ_ASSERT(k >= 0 || gptq_last_error()[0], "encode failed without a message");
        for (int i = 0; i < k; i++)
            FUZZ_ASSERT(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok), "id %d outside the vocabulary", ids[i]);
        free(ids);
        tokenizer_free(tok);
    }
    return 0;
}
