#include "quant/klwin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

size_t klwin_bytes_per_window(const llama_model *m, int S) {
    return (size_t)S * (m->cfg.vocab_size + (size_t)m->cfg.n_layers * m->cfg.dim) * sizeof(float);
}

void klwin_init(klwin *k, const llama_model *m, const int *ids, int nw, int S) {
    memset(k, 0, sizeof *k);
    k->m = m, k->ids = ids, k->nw = nw, k->S = S;
    k->st = llama_state_new(m, S, S);
    k->ref_lp = xmalloc(sizeof(float) * (size_t)S * m->cfg.vocab_size * nw);
    k->xin = xmalloc(sizeof(float) * (size_t)S * m->cfg.n_layers * m->cfg.dim * nw);
}

void klwin_free(klwin *k) {
    if (k->st) llama_state_free(k->st);
    free(k->ref_lp);
    free(k->xin);
    memset(k, 0, sizeof *k);
}

/* Log-softmax of each of n rows (vocab) in place, in double. */
static void log_softmax_rows(float *x, int n, int vocab) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++) {
        float *r = x + (size_t)t * vocab;
        float mx = r[0];
        for (int v = 1; v < vocab; v++) mx = r[v] > mx ? r[v] : mx;
        double sum = 0;
        for (int v = 0; v < vocab; v++) sum += exp((double)r[v] - mx);
        float lse = (float)(mx + log(sum));
        for (int v = 0; v < vocab; v++) r[v] -= lse;
    }
}

double klwin_run(klwin *k, klwin_mode mode, int from, double *dnll) {
    const llama_model *m = k->m;
    const int S = k->S, V = m->cfg.vocab_size, dim = m->cfg.dim, nl = m->cfg.n_layers;
    const int ref = mode == KLWIN_REFERENCE, keep = mode != KLWIN_KL;
    if (keep) from = 0;
    llama_state *st = k->st;
    double kl = 0, nll = 0;
    for (int w = 0; w < k->nw; w++) {
        float *xin = k->xin + (size_t)w * nl * S * dim;
        if (keep) llama_embed(m, k->ids + (size_t)w * S, S, st->x);
        else memcpy(st->x, xin + (size_t)from * S * dim, sizeof(float) * (size_t)S * dim);
        for (int l = from; l < nl; l++) {
            if (keep) memcpy(xin + (size_t)l * S * dim, st->x, sizeof(float) * (size_t)S * dim);
            llama_block_forward(m, st, l, st->x, S, 0);
        }
        llama_rmsnorm(st->x, st->x, m->final_norm, S, dim, m->cfg.norm_eps);
        llama_logits(m, st->x, S, st->logits);
        float *dst = k->ref_lp + (size_t)w * S * V;
        const int *next = k->ids + (size_t)w * S + 1; /* (S-1) the actual next tokens */
        if (ref) {
            memcpy(dst, st->logits, sizeof(float) * (size_t)S * V);
            log_softmax_rows(dst, S, V);
            for (int t = 0; t + 1 < S; t++) nll -= dst[(size_t)t * V + next[t]];
            continue;
        }
        float *cur = st->logits;
        log_softmax_rows(cur, S, V);
        for (int t = 0; t + 1 < S; t++) nll -= cur[(size_t)t * V + next[t]];
#pragma omp parallel for reduction(+ : kl) schedule(static)
        for (int t = 0; t < S; t++) {
            const float *p = dst + (size_t)t * V, *q = cur + (size_t)t * V;
            double acc = 0;
            for (int v = 0; v < V; v++) acc += exp((double)p[v]) * ((double)p[v] - (double)q[v]);
            kl += acc;
        }
    }
    nll /= (double)k->nw * (S > 1 ? S - 1 : 1);
    if (ref) k->ref_nll = nll;
    if (dnll) *dnll = ref ? 0 : nll - k->ref_nll;
    return ref ? 0 : kl / ((double)k->nw * S);
}
