#include "model/perplexity.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"

/* Logits are produced this many rows at a time, so that a 128k vocabulary at ctx 2048
 * needs 64 rows of logits in memory, not 2048. */
#define LOGIT_ROWS 64

/* log Σ exp(logits), with the maximum factored out, accumulated in double. */
static double logsumexp(const float *logits, int vocab) {
    float mx = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - mx);
    return log(sum) + mx;
}

double nll_of(const float *logits, int vocab, int target) { return logsumexp(logits, vocab) - logits[target]; }

long ppl_windows(long n_ids, int ctx, int max_windows) {
    if (ctx < 2) return gptq_fail("perplexity: context length must be at least 2");
    long n_windows = n_ids / ctx;
    if (n_windows < 1) return gptq_fail("perplexity: the text has %ld tokens, fewer than one window of %d", n_ids, ctx);
    if (max_windows > 0 && n_windows > max_windows) n_windows = max_windows;
    return n_windows;
}

void ppl_finish(ppl_result *r, double total_mean_nll, long n_windows, long n_ids, int ctx, double t0) {
    r->mean_nll = total_mean_nll / n_windows;
    r->ppl = exp(r->mean_nll);
    r->tokens = n_ids;
    r->windows = (int)n_windows;
    r->ctx = ctx;
    r->scored = n_windows * (ctx - 1);
    r->seconds = now_seconds() - t0;
}

int ppl_evaluate(const llama_model *m, const int *ids, long n_ids, int ctx, int max_windows, double *window_nll,
                 ppl_result *r) {
    const long n_windows = ppl_windows(n_ids, ctx, max_windows);
    if (n_windows < 0) return -1;
    int vocab = m->cfg.vocab_size, dim = m->cfg.dim;
    llama_state *s = llama_state_new(m, ctx, ctx);
    float *logits = xaligned_alloc(sizeof(float) * LOGIT_ROWS * vocab);
    double t0 = now_seconds(), total = 0;
    progress pg;
    progress_start(&pg, "perplexity: window", n_windows);
    for (long w = 0; w < n_windows; w++) {
        const int *win = ids + w * ctx;
        llama_forward_hidden(m, s, win, ctx, 0);
        double wsum = 0;
        /* position t predicts token t+1, for t = 0 .. ctx-2 */
        for (int t0r = 0; t0r < ctx - 1; t0r += LOGIT_ROWS) {
            int rows = ctx - 1 - t0r < LOGIT_ROWS ? ctx - 1 - t0r : LOGIT_ROWS;
            llama_logits(m, s->x + (size_t)t0r * dim, rows, logits);
            double part = 0;
#pragma omp parallel for reduction(+ : part)
            for (int i = 0; i < rows; i++) part += nll_of(logits + (size_t)i * vocab, vocab, win[t0r + i + 1]);
            wsum += part;
        }
        double wmean = wsum / (ctx - 1);
        if (window_nll) window_nll[w] = wmean;
        total += wmean;
        progress_update(&pg, w + 1);
    }
    progress_end(&pg);
    free(logits);
    llama_state_free(s);
    ppl_finish(r, total, n_windows, n_ids, ctx, t0);
    return 0;
}

/* log-softmax of logits (vocab) into out, in double-accumulated fp32. */
static void log_softmax(const float *logits, int vocab, float *out) {
    float lse = (float)logsumexp(logits, vocab);
    for (int i = 0; i < vocab; i++) out[i] = logits[i] - lse;
}

static int argmax_f(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

int ppl_compare(const llama_model *m, const llama_model *ref, const int *ids, long n_ids, int ctx, int max_windows,
                ppl_result *r) {
    if (ref->cfg.vocab_size != m->cfg.vocab_size)
        return gptq_fail("--compare: vocabulary sizes differ (%d vs %d)", m->cfg.vocab_size, ref->cfg.vocab_size);
    const long n_windows = ppl_windows(n_ids, ctx, max_windows);
    if (n_windows < 0) return -1;
    int vocab = m->cfg.vocab_size;
    llama_state *s = llama_state_new(m, ctx, ctx), *sr = llama_state_new(ref, ctx, ctx);
    float *lq = xaligned_alloc(sizeof(float) * LOGIT_ROWS * vocab), *lr = xaligned_alloc(sizeof(float) * LOGIT_ROWS * vocab);
    double t0 = now_seconds(), nll = 0, nll_ref = 0, kl = 0, agree = 0;
    progress pg;
    progress_start(&pg, "perplexity + compare: window", n_windows);
    for (long w = 0; w < n_windows; w++) {
        const int *win = ids + w * ctx;
        llama_forward_hidden(m, s, win, ctx, 0);
        llama_forward_hidden(ref, sr, win, ctx, 0);
        for (int t0r = 0; t0r < ctx - 1; t0r += LOGIT_ROWS) {
            int rows = ctx - 1 - t0r < LOGIT_ROWS ? ctx - 1 - t0r : LOGIT_ROWS;
            llama_logits(m, s->x + (size_t)t0r * m->cfg.dim, rows, lq);
            llama_logits(ref, sr->x + (size_t)t0r * ref->cfg.dim, rows, lr);
            double a = 0, b = 0, c = 0, d = 0;
#pragma omp parallel for reduction(+ : a, b, c, d)
            for (int i = 0; i < rows; i++) {
                float *q = lq + (size_t)i * vocab, *p = lr + (size_t)i * vocab;
                d += argmax_f(q, vocab) == argmax_f(p, vocab);
                log_softmax(q, vocab, q);
                log_softmax(p, vocab, p);
                int tgt = win[t0r + i + 1];
                a -= q[tgt];
                b -= p[tgt];
                double k = 0;
                for (int v = 0; v < vocab; v++) k += exp((double)p[v]) * ((double)p[v] - q[v]);
                c += k;
            }
            nll += a, nll_ref += b, kl += c, agree += d;
        }
        progress_update(&pg, w + 1);
    }
    progress_end(&pg);
    free(lq), free(lr);
    llama_state_free(s);
    llama_state_free(sr);
    long scored = n_windows * (ctx - 1);
    r->mean_nll = nll / scored;
    r->ppl = exp(r->mean_nll);
    r->ref_ppl = exp(nll_ref / scored);
    r->kl_mean = kl / scored;
    r->top1 = agree / scored;
    r->tokens = n_ids;
    r->windows = (int)n_windows;
    r->ctx = ctx;
    r->scored = scored;
    r->seconds = now_seconds() - t0;
    return 0;
}
