#include "quant/calib_auto.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/progress.h"
#include "model/sampler.h"

/* KV cache budget for one lock-step batch; a larger model samples fewer sequences at once. */
#define AUTO_CACHE_BUDGET ((size_t)2 << 30)

int calib_generate(calib_set *c, const llama_model *m, const tokenizer *tok, int n, int seqlen, uint64_t seed) {
    memset(c, 0, sizeof *c);
    const hf_config *cfg = &m->cfg;
    if (n < 1 || seqlen < 2) return gptq_fail("calibration: need at least one window of 2 or more tokens");
    int vocab = cfg->vocab_size;
    size_t per_seq = (size_t)cfg->n_layers * seqlen * cfg->n_kv_heads * cfg->head_dim * sizeof(float) * 2;
    int B = (int)(AUTO_CACHE_BUDGET / per_seq);
    if (B < 1) B = 1;
    if (B > n) B = n;
    if (B > 64) B = 64;
    c->n = n;
    c->seqlen = seqlen;
    c->ids = xmalloc(sizeof(int) * (size_t)n * seqlen);
    int bos = tokenizer_bos(tok);
    if (bos < 0 || bos >= vocab) bos = cfg->bos_id >= 0 && cfg->bos_id < vocab ? cfg->bos_id : 0;
    llama_state *s = llama_state_new_ex(m, seqlen, B, cfg->n_layers * B);
    sampler sm;
    sampler_init(&sm, vocab, 1.0f, 0, 0.95f, seed ^ 0xA5A5A5A5ull);
    float *row = xmalloc(sizeof(float) * vocab);
    int *cur = xmalloc(sizeof(int) * B);
    int n_eos = 0, *eos = xmalloc(sizeof(int) * vocab);
    for (int v = 0; v < vocab; v++)
        if (tokenizer_is_eos(tok, v)) eos[n_eos++] = v;
    progress pg;
    progress_start(&pg, "calibration: sampling windows", n);
    for (int b0 = 0; b0 < n; b0 += B) {
        int nb = n - b0 < B ? n - b0 : B;
        for (int b = 0; b < nb; b++) cur[b] = c->ids[(size_t)(b0 + b) * seqlen] = bos;
        for (int pos = 0; pos + 1 < seqlen; pos++) {
            const float *lg = llama_forward_lockstep(m, s, cur, nb, pos);
            for (int b = 0; b < nb; b++) {
                memcpy(row, lg + (size_t)b * vocab, sizeof(float) * vocab);
                for (int e = 0; e < n_eos; e++) row[eos[e]] = -INFINITY;
                int next = sampler_sample(&sm, row);
                c->ids[(size_t)(b0 + b) * seqlen + pos + 1] = cur[b] = next;
            }
        }
        progress_update(&pg, b0 + nb);
    }
    progress_end(&pg);
    free(row), free(cur), free(eos);
    sampler_free(&sm);
    llama_state_free(s);
    return 0;
}

int calib_concat(calib_set *out, const calib_set *a, const calib_set *b) {
    memset(out, 0, sizeof *out);
    if (a->n > 0 && b->n > 0 && a->seqlen != b->seqlen)
        return gptq_fail("calibration: cannot mix windows of %d and %d tokens", a->seqlen, b->seqlen);
    out->n = a->n + b->n;
    out->seqlen = a->n > 0 ? a->seqlen : b->seqlen;
    out->ids = xmalloc(sizeof(int) * ((size_t)out->n * out->seqlen + 1));
    if (a->n) memcpy(out->ids, a->ids, sizeof(int) * (size_t)a->n * a->seqlen);
    if (b->n) memcpy(out->ids + (size_t)a->n * out->seqlen, b->ids, sizeof(int) * (size_t)b->n * b->seqlen);
    return 0;
}
