/* gptq inspect: what a model directory holds — architecture, shapes, dtypes, parameter
 * count, files, tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/error.h"
#include "io/gguf.h"
#include "model/llama.h"
#include "text/tokenizer.h"

static const char *rope_name(rope_kind k) { return k == ROPE_LLAMA3 ? "llama3" : k == ROPE_LINEAR ? "linear" : "default"; }

static void shape_str(const st_tensor *t, char *buf, size_t n) {
    buf[0] = 0;
    for (int d = 0; d < t->ndim; d++) snprintf(buf + strlen(buf), n - strlen(buf), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
}

int cmd_inspect(int argc, char **argv) {
    int json = 0, all = 0;
    const cli_opt opts[] = {
        {"--tensors", NULL, OPT_FLAG, &all, 0, -1, "list every tensor (default: the first layer's)"},
        {"--json", NULL, OPT_FLAG, &json, 0, -1, "print a JSON summary as the last line"},
        {0},
    };
    cli_command cmd = {"inspect", "DIR|FILE.gguf [--tensors] [--json]", opts, 1, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (cmd.n_positional != 1) return cli_error(&cmd, "give the model directory");
    const char *dir = cmd.positional[0];
    if (gguf_is_gguf(dir)) return inspect_gguf(dir, all, json);
    llama_model m;
    if (llama_load(&m, dir) != 0) return cli_fail();
    const hf_config *c = &m.cfg;

    printf("model:        %s\n", dir);
    printf("architecture: %s, %d layers, hidden %d, intermediate %d\n", c->model_type, c->n_layers, c->dim, c->hidden_dim);
    printf("attention:    %d heads x %d, %d KV heads%s%s\n", c->n_heads, c->head_dim, c->n_kv_heads,
           c->n_kv_heads < c->n_heads ? " (GQA)" : "", c->qkv_bias ? ", q/k/v bias" : "");
    printf("rope:         theta %g, scaling %s", c->rope_theta, rope_name(c->rope_type));
    if (c->rope_type != ROPE_DEFAULT) printf(" (factor %g)", c->rope_factor);
    printf(", max positions %d\n", c->max_pos);
    printf("vocab:        %d, embeddings %s, rms_norm_eps %g\n", c->vocab_size, c->tie_embeddings ? "tied" : "untied",
           c->norm_eps);
    printf("parameters:   %lld (%.2f M)\n", (long long)m.n_params, m.n_params / 1e6);

    /* dtype histogram by bytes */
    size_t bytes[DT_COUNT] = {0};
    for (int i = 0; i < m.st.n_tensors; i++) bytes[m.st.tensors[i].dtype] += m.st.tensors[i].nbytes;
    printf("dtypes:      ");
    for (int d = 0; d < DT_COUNT; d++)
        if (bytes[d]) printf(" %s %.1f MiB", dtype_name((gptq_dtype)d), bytes[d] / 1048576.0);
    printf("\nfiles:        %d safetensors file%s, %d tensors\n", m.st.n_files, m.st.n_files == 1 ? "" : "s", m.st.n_tensors);

    printf("tensors%s:\n", all ? "" : " (layer 0 and non-layer)");
    for (int i = 0; i < m.st.n_tensors; i++) {
        const st_tensor *t = &m.st.tensors[i];
        if (!all && strncmp(t->name, "model.layers.", 13) == 0 && strncmp(t->name, "model.layers.0.", 15) != 0) continue;
        char sh[96];
        shape_str(t, sh, sizeof sh);
        printf("  %-48s %-5s [%s]\n", t->name, dtype_name(t->dtype), sh);
    }

    tokenizer *tok = tokenizer_load(dir);
    if (tok) {
        int base = tokenizer_model_vocab_size(tok), all = tokenizer_vocab_size(tok);
        printf("tokenizer:    %s, %d tokens", tokenizer_kind_name(tok), base);
        if (all > base) printf(" (+%d added)", all - base);
        printf(", BOS %d\n", tokenizer_bos(tok));
    } else {
        printf("tokenizer:    unusable (%s)\n", gptq_last_error());
        rc = 1;
    }
    if (json) {
        printf("{\"model_type\": \"%s\", \"layers\": %d, \"hidden\": %d, \"intermediate\": %d, \"heads\": %d, "
               "\"kv_heads\": %d, \"head_dim\": %d, \"vocab\": %d, \"params\": %lld, \"tied\": %s, \"tokenizer\": \"%s\"}\n",
               c->model_type, c->n_layers, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
               (long long)m.n_params, c->tie_embeddings ? "true" : "false", tok ? tokenizer_kind_name(tok) : "");
    }
    if (rc) fprintf(stderr, "gptq: error: %s\n", gptq_last_error());
    tokenizer_free(tok);
    llama_free(&m);
    return rc;
}
