/* Choosing the next token from logits: greedy (temperature 0), or temperature with
 * optional top-k and top-p (nucleus) filtering, from a seeded generator. */
#ifndef GPTQ_MODEL_SAMPLER_H
#define GPTQ_MODEL_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t rng;      /* xorshift64* state */
    int vocab;
    int *idx;          /* (vocab) scratch: candidate ids */
    float *prob;       /* (vocab) scratch: probabilities */
} sampler;

void sampler_init(sampler *s, int vocab, float temperature, int top_k, float top_p, uint64_t seed);
void sampler_free(sampler *s);
/* Picks a token from logits (vocab). Ties in greedy mode go to the lowest id. */
int sampler_sample(sampler *s, const float *logits);
/* A uniform float in [0, 1). */
float sampler_rand(sampler *s);

#endif
