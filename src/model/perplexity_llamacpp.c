/* Perplexity as llama.cpp's llama-perplexity measures it (see perplexity.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "model/perplexity.h"

int ppl_evaluate_llamacpp(const llama_model *m, const int *ids, long n_ids, int ctx, int bos, int max_windows,
                          ppl_result *r) {
    if (ctx < 4 || ctx % 2) return gptq_fail("perplexity: the llama.cpp protocol needs an even context of at least 4");
    if (bos < 0) return gptq_fail("perplexity: the llama.cpp protocol needs a BOS token, and this tokenizer has none");
    long n_windows = n_ids / ctx;
    if (n_ids < 2L * ctx)
        return gptq_fail("perplexity: the text has %ld tokens; llama.cpp's protocol needs at least 2 x %d", n_ids, ctx);
    if (max_windows > 0 && n_windows > max_windows) n_windows = max_windows;
    const int vocab = m->cfg.vocab_size, dim = m->cfg.dim, first = ctx / 2, rows = ctx - first - 1;
    llama_state *s = llama_state_new(m, ctx, ctx);
    float *logits = xaligned_alloc(sizeof(float) * (size_t)rows * vocab);
    int *win = xmalloc(sizeof(int) * (size_t)ctx);
    double t0 = now_seconds(), total = 0;
    progress pg;
    progress_start(&pg, "perplexity (llama.cpp protocol): window", n_windows);
    for (long w = 0; w < n_windows; w++) {
        memcpy(win, ids + w * ctx, sizeof(int) * (size_t)ctx);
        win[0] = bos; /* every window starts with BOS, in place of its first token */
        llama_forward_hidden(m, s, win, ctx, 0);
        /* positions first .. ctx-2 predict tokens first+1 .. ctx-1 */
        llama_logits(m, s->x + (size_t)first * dim, rows, logits);
        double part = 0;
#pragma omp parallel for reduction(+ : part)
        for (int i = 0; i < rows; i++) part += nll_of(logits + (size_t)i * vocab, vocab, win[first + i + 1]);
        total += part;
        progress_update(&pg, w + 1);
    }
    progress_end(&pg);
    free(win);
    free(logits);
    llama_state_free(s);
    r->scored = n_windows * rows;
    r->mean_nll = total / (double)r->scored;
    r->ppl = exp(r->mean_nll);
    r->tokens = n_ids;
    r->windows = (int)n_windows;
    r->ctx = ctx;
    r->seconds = now_seconds() - t0;
    return 0;
}
