/* Whole-model quantization: calibration activations flow through the model block by
 * block, each block's Linear layers are quantized in true-sequential order (q/k/v; o;
 * gate/up; down) from Hessians of inputs that already carry the quantization of
 * everything before them, and the block's outputs — recomputed with the quantized
 * weights — become the next block's inputs.
 *
 * Per block, for all calibration windows (X = block inputs, kept for all windows):
 *   1. H_qkv  from rmsnorm(X)                              -> quantize q, k, v
 *   2. A = attention(rmsnorm(X)), H_o from A               -> quantize o
 *   3. Hres = X + o(A) (stored over A), H_mlp from rmsnorm(Hres) -> quantize gate, up
 *   4. act = silu(gate)·up of rmsnorm(Hres), H_down from act    -> quantize down
 *   5. X = Hres + down(act)                                (the next block's input)
 * so each Linear runs about once per window (gate/up twice) and attention once, and only
 * two activation buffers of (windows·seqlen, dim) are resident besides one block's
 * Hessians: a 7B model at 128×2048 needs ~9 GB of activations.
 *
 * RTN needs no calibration: each weight is rounded on its own grid. */
#ifndef GPTQ_QUANT_PIPELINE_H
#define GPTQ_QUANT_PIPELINE_H

#include "model/llama.h"
#include "quant/gptq.h"
#include "quant/pack.h"
#include "text/calib.h"

typedef enum { QMETHOD_GPTQ = 0, QMETHOD_RTN } quant_method;

/* Measurement mode (quant/measure.h): run(ctx, k, l, h) receives the Hessian of Linear k
 * (k = layer*LIN_COUNT + LIN_*, lm_head last) instead of quantizing it, and the weights
 * stay in float, so every block sees the float model's activations.  wants(ctx, k) == 0
 * skips Linear k (its Hessian is not even accumulated when no Linear sharing it wants it):
 * that is how an interrupted measurement resumes. */
typedef struct {
    int (*wants)(void *ctx, int k);
    int (*run)(void *ctx, int k, const linear *l, const float *h);
    void *ctx;
} quant_measure_hook;

typedef struct quant_layer_report quant_layer_report;

/* A replacement for the GPTQ/RTN step of every Linear (GGUF block formats use it,
 * quant/gguf_quant.h): quantizes w (out, in) with the Hessian h (NULL for RTN), returns
 * the dequantized weight in *wq (heap, out·in floats) and sets rep's loss, rel_err, bpw,
 * damp_retries and dead.  0, or -1 with an error. */
typedef struct {
    int (*fn)(void *ctx, const char *name, const float *w, const float *h, int64_t out, int64_t in, float **wq,
              quant_layer_report *rep);
    void *ctx;
} quant_linear_hook;

struct quant_result;

/* Hooks that make a GPTQ run resumable (quant/resume.h implements them; NULL = none).
 * The state after block l is the next block's inputs X and the results of blocks 0..l:
 * nothing else carries over from one block to the next. */
typedef struct {
    void *ctx;
    /* Before the first block: fills X (rows, dim) and r's rows/packed layers of the blocks
     * already done and returns how many there are (0: start from the embeddings), or -1. */
    int (*restore)(void *ctx, float *X, size_t rows, int dim, struct quant_result *r);
    /* After each block: `done` blocks are finished, X holds the inputs of the next one. */
    int (*block_done)(void *ctx, int done, const float *X, size_t rows, int dim, const struct quant_result *r);
} quant_block_hooks;

typedef struct {
    quant_method method;
    gptq_params gp;        /* bits, group size, sym, act-order, static groups, damp, block */
    const gptq_params *layer_gp; /* (n_layers*LIN_COUNT + 1) per-Linear settings (mixed precision), or NULL: gp for all */
    int quantize_lm_head;  /* lm_head too (needs untied embeddings) */
    int for_checkpoint;    /* skip (keep in float) layers the HF GPTQ format cannot hold */
    int keep_dequantized;  /* leave the dequantized weights in the model (in-memory eval) */
    const quant_measure_hook *measure; /* non-NULL: measurement mode (GPTQ only), nothing is quantized */
    const quant_linear_hook *hook; /* NULL: gptq_quantize / rtn_quantize with gp, packed for the HF format */
    const quant_block_hooks *hooks; /* GPTQ only: save/restore state per block, or NULL */
    int gpu_fp32;          /* quantize_model_cuda: calibration GEMMs on fp32 operands (the CLI default; 0 = fp16 operands, faster, further from the CPU) */
} quant_options;

/* What happened to one Linear. */
struct quant_layer_report {
    int layer;             /* block index, or -1 for lm_head */
    llama_linear_id id;    /* LIN_* (unused for lm_head) */
    char name[64];         /* "model.layers.3.mlp.down_proj" */
    int64_t out, in;
    int quantized;         /* 0: kept in float (see skip_reason) */
    char skip_reason[96];
    double loss;           /* GPTQ loss (NAN for RTN) */
    double rel_err;        /* ‖(W−Ŵ)X‖/‖WX‖ on the calibration set (NAN for RTN) */
    double weight_rmse;    /* sqrt(mean((W−Ŵ)²)) */
    int bits, group_size, sym; /* the setting used */
    double bpw;            /* storage bits per weight of this layer */
    double predicted_rel_err; /* what the measurement predicted for this setting (NAN if none) */
    double seconds;
    int damp_retries;
    int dead;              /* dead input columns */
};

typedef struct quant_result {
    int n_rows;
    quant_layer_report *rows; /* (n_layers*LIN_COUNT + 1) */
    gptq_packed *packed;      /* (n_layers*LIN_COUNT + 1): [layer*LIN_COUNT + id], lm_head last; qweight NULL if not quantized */
    double bpw;               /* over the quantized layers, scales/zeros/g_idx included */
    int64_t quantized_params;
    double seconds;
    double gpu_peak_mb;       /* quantize_model_cuda: device memory high-water mark (MiB, all of the GPU's use), else 0 */
} quant_result;

/* Quantizes m in place (its Linear layers end up holding dequantized fp32 weights if
 * keep_dequantized, else their original weights) and returns the packed layers and a
 * per-layer report.  calib may be NULL for RTN. */
int quantize_model(llama_model *m, const calib_set *calib, const quant_options *o, quant_result *r);
void quant_result_free(quant_result *r);
/* For other drivers of the same work (quant/pipeline_cuda.h): r's rows named and zeroed for m
 * (n_layers·LIN_COUNT + 1, lm_head last); at the end, the bpw totals, the warning about
 * layers kept in float, and the seconds since t_start. */
void quant_result_begin(const llama_model *m, quant_result *r);
void quant_result_end(quant_result *r, double t_start);

#endif
