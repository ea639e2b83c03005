/* The public API of include/gptq.h, on top of the model, tokenizer and sampler modules. */
#include "gptq.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "model/sampler.h"
#include "text/tokenizer.h"

struct gptq_model {
    llama_model model;
    tokenizer *tok;
    llama_state *state; /* KV cache of max_ctx positions, batches up to max_ctx */
    int max_ctx;
};

gptq_model *gptq_open(const char *dir, int max_ctx) {
    gptq_model *g = xcalloc(1, sizeof *g);
    if (llama_load(&g->model, dir) != 0) {
        free(g);
        return NULL;
    }
    if (!(g->tok = tokenizer_load(dir))) {
        llama_free(&g->model);
        free(g);
        return NULL;
    }
    g->max_ctx = max_ctx > 0 ? max_ctx : g->model.cfg.max_pos;
    g->state = llama_state_new(&g->model, g->max_ctx, g->max_ctx);
    return g;
}

void gptq_close(gptq_model *g) {
    if (!g) return;
    llama_state_free(g->state);
    tokenizer_free(g->tok);
    llama_free(&g->model);
    free(g);
}

void gptq_info(const gptq_model *g, gptq_model_info *o) {
    const hf_config *c = &g->model.cfg;
    *o = (gptq_model_info){c->model_type, c->n_layers, c->dim, c->hidden_dim, c->n_heads, c->n_kv_heads, c->head_dim,
                           c->vocab_size, c->max_pos, g->model.n_params};
}

int gptq_tokenize(const gptq_model *g, const char *text, size_t len, int add_bos, int *ids, int cap) {
    int *tmp = NULL;
    int n = tokenizer_encode(g->tok, text, len, add_bos, &tmp);
    if (n >= 0 && ids) memcpy(ids, tmp, sizeof(int) * (n < cap ? n : cap));
    free(tmp);
    return n;
}

char *gptq_detokenize(const gptq_model *g, const int *ids, int n) { return tokenizer_decode(g->tok, ids, n); }

const float *gptq_eval(gptq_model *g, const int *ids, int n, int pos) {
    if (n <= 0 || pos < 0 || pos + n > g->max_ctx) {
        gptq_fail("gptq_eval: positions %d..%d are outside the context of %d", pos, pos + n - 1, g->max_ctx);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g->model.cfg.vocab_size) {
            gptq_fail("gptq_eval: token id %d is outside the vocabulary (%d)", ids[i], g->model.cfg.vocab_size);
            return NULL;
        }
    return llama_forward(&g->model, g->state, ids, n, pos, 0);
}

char *gptq_generate(gptq_model *g, const char *prompt, int n_new, float temperature, int top_k, float top_p,
                    uint64_t seed) {
    int *ids = NULL;
    int np = tokenizer_encode(g->tok, prompt, strlen(prompt), 1, &ids);
    if (np <= 0) {
        free(ids);
        if (np == 0) gptq_fail("gptq_generate: empty prompt");
        return NULL;
    }
    if (np + n_new > g->max_ctx) n_new = g->max_ctx - np;
    if (n_new < 0) {
        free(ids);
        gptq_fail("gptq_generate: the prompt (%d tokens) does not fit the context of %d", np, g->max_ctx);
        return NULL;
    }
    ids = xrealloc(ids, sizeof(int) * (np + n_new + 1));
    sampler s;
    sampler_init(&s, g->model.cfg.vocab_size, temperature, top_k, top_p, seed);
    const float *logits = gptq_eval(g, ids, np, 0);
    int n = np;
    while (logits && n < np + n_new) {
        int next = sampler_sample(&s, logits);
        if (tokenizer_is_eos(g->tok, next)) break;
        ids[n++] = next;
        if (n < np + n_new) logits = gptq_eval(g, &ids[n - 1], 1, n - 1);
    }
    sampler_free(&s);
    int skip = ids[0] == tokenizer_bos(g->tok) ? 1 : 0;
    char *text = logits ? tokenizer_decode(g->tok, ids + skip, n - skip) : NULL;
    free(ids);
    return text;
}

double gptq_perplexity(const gptq_model *g, const char *text, size_t len, int ctx, int max_windows) {
    int *ids = NULL;
    int n = tokenizer_encode(g->tok, text, len, 0, &ids);
    ppl_result r;
    int rc = n < 0 ? -1 : ppl_evaluate(&g->model, ids, n, ctx, max_windows, NULL, &r);
    free(ids);
    return rc == 0 ? r.ppl : -1.0;
}
