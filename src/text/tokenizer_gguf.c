/* The tokenizer of a GGUF file: its tokenizer.ggml.* metadata rewritten as the
 * tokenizer.json that behaves as llama.cpp's tokenizer for those keys (io/gguf_vocab.c),
 * then loaded as any other. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/gguf_vocab.h"
#include "text/tokenizer.h"

tokenizer *tokenizer_load_gguf(const char *path) {
    gguf_file g;
    if (gguf_open(&g, path)) return NULL;
    int bos, eos, add_bos;
    char *json = gguf_vocab_to_hf_json(&g, &bos, &eos, &add_bos);
    tokenizer *t = json ? tokenizer_load_json(path, json, strlen(json), bos, eos) : NULL;
    free(json);
    gguf_close(&g);
    return t;
}
