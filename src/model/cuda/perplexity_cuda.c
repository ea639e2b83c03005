/* Perplexity through the GPU forward pass (perplexity_cuda.h). */
#include "model/cuda/perplexity_cuda.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"

int ppl_evaluate_cuda(llama_cuda *m, const int *ids, long n_ids, int ctx, int max_windows, ppl_result *r) {
    const long n_windows = ppl_windows(n_ids, ctx, max_windows);
    if (n_windows < 0) return -1;
    const int vocab = llama_cuda_config(m)->vocab_size;
    double t0 = now_seconds(), total = 0;
    progress pg;
    progress_start(&pg, "perplexity (cuda): window", n_windows);
    for (long w = 0; w < n_windows; w++) {
        const int *win = ids + w * ctx;
        const float *logits = llama_cuda_forward(m, win, ctx, 0, 1); /* (ctx, vocab) on the host */
        if (!logits) {
            progress_end(&pg);
            return -1;
        }
        double wsum = 0;
        /* position t predicts token t+1, for t = 0 .. ctx-2 */
#pragma omp parallel for reduction(+ : wsum)
        for (int t = 0; t < ctx - 1; t++) wsum += nll_of(logits + (size_t)t * vocab, vocab, win[t + 1]);
        total += wsum / (ctx - 1);
        progress_update(&pg, w + 1);
    }
    progress_end(&pg);
    ppl_finish(r, total, n_windows, n_ids, ctx, t0);
    return 0;
}
