/* The model's output divergence on a few calibration windows, for the mixed-precision
 * sensitivities (quant/measure.h: one Linear quantized in a float model; quant/refine.h:
 * one Linear changed in a quantized model).
 *
 * A reference pass keeps the reference model's next-token log-probabilities; an inputs
 * pass keeps every block's input under the model as it is then.  A later pass in which
 * only blocks from `from` on differ from that model starts from the kept input of block
 * `from` (the earlier blocks are not run again: the same numbers as a whole forward).
 * Memory: windows × seqlen × (vocab + n_layers × dim) floats. */
#ifndef GPTQ_QUANT_KLWIN_H
#define GPTQ_QUANT_KLWIN_H

#include <stddef.h>

#include "model/llama.h"

typedef struct {
    const llama_model *m;
    const int *ids;    /* (nw, S) the windows' token ids (borrowed) */
    int nw, S;
    llama_state *st;   /* forward state for one window */
    float *ref_lp;     /* (nw, S, vocab) the reference model's log-probabilities */
    float *xin;        /* (nw, n_layers, S, dim) the recorded input of every block */
    double ref_nll;    /* the reference model's mean NLL of the windows' next tokens */
} klwin;

/* Bytes klwin_init needs per window (to size nw). */
size_t klwin_bytes_per_window(const llama_model *m, int S);
/* Allocates for nw windows of S tokens at ids; ids must be inside the vocabulary. */
void klwin_init(klwin *k, const llama_model *m, const int *ids, int nw, int S);
void klwin_free(klwin *k);

typedef enum {
    KLWIN_REFERENCE, /* from 0: keep the log-probabilities, NLL and block inputs; returns 0 */
    KLWIN_INPUTS,    /* from 0: keep the block inputs; returns the KL from the reference */
    KLWIN_KL         /* from `from`, using the kept inputs; returns the KL from the reference */
} klwin_mode;

/* Mean KL(reference || current model) per token over the windows (see the modes); *dnll
 * (may be NULL) gets the increase of the mean NLL of the next tokens over the reference's. */
double klwin_run(klwin *k, klwin_mode mode, int from, double *dnll);

#endif
