/* gptq inspect FILE.gguf: metadata, tensor types and the tokenizer of a GGUF file, after
 * the reader's full validation, and whether our engine can run it (a load of the model). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/error.h"
#include "io/gguf.h"
#include "model/llama.h"
#include "text/tokenizer.h"

static void print_value(const gguf_kv *kv) {
    switch (kv->type) {
    case GGUF_STRING:
        if (strlen(kv->str) > 60) printf("\"%.57s...\" (%zu bytes)", kv->str, strlen(kv->str));
        else printf("\"%s\"", kv->str);
        break;
    case GGUF_F32:
    case GGUF_F64: printf("%g", kv->num.f); break;
    case GGUF_BOOL: printf("%s", kv->num.u ? "true" : "false"); break;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64: printf("%" PRId64, kv->num.i); break;
    case GGUF_ARRAY:
        printf("[%s × %" PRIu64 "]", gguf_vtype_name(kv->arr_type), kv->n);
        if (kv->arr_type == GGUF_STRING && kv->n)
            printf(" \"%s\"%s", kv->strs[0], kv->n > 1 ? ", ..." : "");
        break;
    default: printf("%" PRIu64, kv->num.u); break;
    }
}

int inspect_gguf(const char *path, int all, int json) {
    gguf_file g;
    if (gguf_open(&g, path)) return cli_fail();
    size_t bytes[GGML_T_MAX] = {0};
    int count[GGML_T_MAX] = {0};
    size_t total = 0;
    for (int i = 0; i < g.n_tensors; i++) {
        bytes[g.tensors[i].type] += g.tensors[i].nbytes;
        count[g.tensors[i].type]++;
        total += g.tensors[i].nbytes;
    }
    printf("file:         %s (GGUF v%u, alignment %u, %d metadata entries, %d tensors, %.2f MiB of tensor data)\n", path,
           g.version, g.alignment, g.n_kv, g.n_tensors, total / 1048576.0);
    printf("metadata:\n");
    for (int i = 0; i < g.n_kv; i++) {
        printf("  %-44s ", g.kv[i].key);
        print_value(&g.kv[i]);
        printf("\n");
    }
    printf("tensor types:");
    for (int t = 0; t < GGML_T_MAX; t++)
        if (count[t]) printf(" %s ×%d (%.2f MiB)", ggml_traits((uint32_t)t)->name, count[t], bytes[t] / 1048576.0);
    printf("\ntensors%s:\n", all ? "" : " (blk.0 and non-layer)");
    for (int i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        if (!all && strncmp(t->name, "blk.", 4) == 0 && strncmp(t->name, "blk.0.", 6) != 0) continue;
        char sh[96] = "";
        for (int d = 0; d < t->n_dims; d++) snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        printf("  %-32s %-5s [%s]\n", t->name, ggml_traits(t->type)->name, sh);
    }
    gguf_close(&g);
    llama_model m;
    int rc = 0;
    tokenizer *tok = NULL;
    if (llama_load(&m, path) != 0) {
        printf("engine:       cannot run it (%s)\n", gptq_last_error());
        rc = 1;
    } else {
        const hf_config *c = &m.cfg;
        printf("model:        llama, %d layers, hidden %d, intermediate %d, %d heads x %d, %d KV heads, vocab %d, %s, "
               "%lld parameters\n",
               c->n_layers, c->dim, c->hidden_dim, c->n_heads, c->head_dim, c->n_kv_heads, c->vocab_size,
               c->tie_embeddings ? "tied embeddings" : "untied", (long long)m.n_params);
        tok = tokenizer_load(path);
        if (tok) printf("tokenizer:    %s, %d tokens, BOS %d\n", tokenizer_kind_name(tok), tokenizer_vocab_size(tok), tokenizer_bos(tok));
        else printf("tokenizer:    unusable (%s)\n", gptq_last_error()), rc = 1;
        if (json)
            printf("{\"format\": \"gguf\", \"layers\": %d, \"hidden\": %d, \"vocab\": %d, \"params\": %lld, \"tensor_bytes\": %zu, "
                   "\"tokenizer\": \"%s\"}\n",
                   c->n_layers, c->dim, c->vocab_size, (long long)m.n_params, total, tok ? tokenizer_kind_name(tok) : "");
        llama_free(&m);
    }
    if (rc) fprintf(stderr, "gptq: error: %s\n", gptq_last_error());
    tokenizer_free(tok);
    return rc;
}
