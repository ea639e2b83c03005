/* Perplexity with the GPTQ protocol: the text is tokenized once without BOS, cut into
 * non-overlapping windows of ctx tokens (the remainder is dropped), and
 * ppl = exp(mean NLL of predicting positions 1..ctx-1 of every window). */
#ifndef GPTQ_MODEL_PERPLEXITY_H
#define GPTQ_MODEL_PERPLEXITY_H

#include "model/llama.h"

typedef struct {
    double ppl;
    double mean_nll;
    long tokens;   /* tokens in the whole text */
    int windows;   /* windows evaluated */
    int ctx;
    long scored;   /* predictions scored: windows * (ctx - 1) */
    double seconds;
    /* with a reference model (ppl_compare): per predicted position, averaged */
    double ref_ppl;  /* the reference model's perplexity on the same windows */
    double kl_mean;  /* mean KL(reference || model) in nats */
    double top1;     /* fraction of positions where both models' most likely token agree */
} ppl_result;

/* Evaluates at most max_windows windows (<= 0: all).  window_nll, if not NULL, receives
 * the mean NLL of each window evaluated (room for all windows).  Fails if the text is
 * shorter than one window. */
int ppl_evaluate(const llama_model *m, const int *ids, long n_ids, int ctx, int max_windows, double *window_nll,
                 ppl_result *r);

/* The same windows through m and a reference model ref (e.g. the original of a quantized
 * model; same vocabulary): also the reference's perplexity, the mean KL divergence of m's
 * next-token distribution from ref's, and top-1 agreement. */
int ppl_compare(const llama_model *m, const llama_model *ref, const int *ids, long n_ids, int ctx, int max_windows,
                ppl_result *r);

/* llama.cpp's llama-perplexity protocol: ids is the whole text tokenized WITH its BOS
 * (llama.cpp reads the file as raw bytes), cut into non-overlapping windows of ctx tokens
 * (the remainder dropped; at least two windows); the first token of every window is
 * replaced by BOS, and only the second half is scored: positions ctx/2 .. ctx-2 predict
 * tokens ctx/2+1 .. ctx-1, so ppl = exp(Σ NLL / (windows · (ctx/2 − 1))). */
int ppl_evaluate_llamacpp(const llama_model *m, const int *ids, long n_ids, int ctx, int bos, int max_windows,
                          ppl_result *r);

/* Windows of ctx tokens in n_ids tokens, capped at max_windows (<= 0: all); -1 with the
 * error set when ctx < 2 or the text is shorter than one window. */
long ppl_windows(long n_ids, int ctx, int max_windows);
/* Fills r for the GPTQ protocol from the sum over windows of their mean NLL; t0 = the
 * start time (now_seconds). */
void ppl_finish(ppl_result *r, double total_mean_nll, long n_windows, long n_ids, int ctx, double t0);

/* NLL of `target` under logits (vocab): logsumexp(logits) - logits[target], in double. */
double nll_of(const float *logits, int vocab, int target);

#endif
