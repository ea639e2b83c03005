#include "model/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

void sampler_init(sampler *s, int vocab, float temperature, int top_k, float top_p, uint64_t seed) {
    s->temperature = temperature;
    s->top_k = top_k;
    s->top_p = top_p;
    s->rng = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!s->rng) s->rng = 1;
    s->vocab = vocab;
    s->idx = xmalloc(sizeof(int) * vocab);
    s->prob = xmalloc(sizeof(float) * vocab);
}

void sampler_free(sampler *s) {
    free(s->idx);
    free(s->prob);
    s->idx = NULL;
    s->prob = NULL;
}

float sampler_rand(sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static const float *sort_prob;
static int by_prob_desc(const void *a, const void *b) {
    float x = sort_prob[*(const int *)a], y = sort_prob[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

int sampler_sample(sampler *s, const float *logits) {
    int n = s->vocab;
    if (s->temperature <= 0) return argmax(logits, n);
    /* softmax(logits / T) */
    float mx = logits[argmax(logits, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += s->prob[i] = expf((logits[i] - mx) / s->temperature);
    for (int i = 0; i < n; i++) s->prob[i] = (float)(s->prob[i] / sum);
    int m = n;
    if ((s->top_k > 0 && s->top_k < n) || s->top_p < 1) {
        /* Only tokens with p >= (1 - top_p) / (n - 1) can be in the nucleus (the others
         * together hold less than 1 - top_p), so only those are sorted. With top-k alone,
         * everything is a candidate. */
        float cutoff = s->top_p < 1 ? (1.0f - s->top_p) / (float)(n - 1) : 0.0f;
        m = 0;
        for (int i = 0; i < n; i++)
            if (s->prob[i] >= cutoff) s->idx[m++] = i;
        sort_prob = s->prob;
        qsort(s->idx, m, sizeof(int), by_prob_desc);
        if (s->top_k > 0 && s->top_k < m) m = s->top_k;
        if (s->top_p < 1) {
            double cum = 0;
            for (int i = 0; i < m; i++) {
                cum += s->prob[s->idx[i]];
                if (cum >= s->top_p) {
                    m = i + 1;
                    break;
                }
            }
        }
    } else {
        for (int i = 0; i < n; i++) s->idx[i] = i;
    }
    double mass = 0;
    for (int i = 0; i < m; i++) mass += s->prob[s->idx[i]];
    double r = sampler_rand(s) * mass, cum = 0;
    for (int i = 0; i < m; i++) {
        cum += s->prob[s->idx[i]];
        if (r < cum) return s->idx[i];
    }
    return s->idx[m - 1];
}
