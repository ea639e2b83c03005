/* Model-written calibration data ("--calib auto"): the model samples its own text from
 * BOS, as proposed in the exllamav2 discussion of calibration sets ("model average
 * samples"): the activations then follow the model's own distribution rather than one
 * dataset's.  Sequences are sampled in lock-step batches (temperature 1, top-p 0.95). */
#ifndef GPTQ_QUANT_CALIB_AUTO_H
#define GPTQ_QUANT_CALIB_AUTO_H

#include <stdint.h>

#include "model/llama.h"
#include "text/calib.h"
#include "text/tokenizer.h"

/* n windows of seqlen tokens; each starts with BOS (if the tokenizer has one) followed by
 * sampled tokens.  EOS is never sampled (masked), so every window is full length. */
int calib_generate(calib_set *c, const llama_model *m, const tokenizer *tok, int n, int seqlen, uint64_t seed);

/* --calib-mix: the windows of `text` followed by those of `model` (model-written) in one
 * set (equal seqlen), the exllamav2 discussion's proposal of specialising a model-average
 * calibration set with some user text.  The order does not matter to the Hessians. */
int calib_concat(calib_set *out, const calib_set *text, const calib_set *model);

#endif
