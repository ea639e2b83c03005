/* Mixed-precision plans: per-Linear GPTQ settings for a bits-per-weight target, either
 * from a measurement (quant/measure.h) by the exact allocator (quant/alloc.h), or by the
 * llama.cpp-style rule for comparison.  The target counts exactly what the pipeline's
 * bpw counts: qweight, qzeros, fp16 scales and g_idx of every Linear the checkpoint can
 * hold, over those Linears' parameters (layers the format cannot hold stay in float and
 * are outside both sums).
 *
 * Objective of the allocator (MIXED_KL, the default): the predicted KL divergence of the
 * model's output, Σ sensitivity_k · rel_err_k², with rel_err_k = ‖(W−Ŵ)X‖/‖WX‖ of Linear
 * k at its setting and sensitivity_k its measured KL per unit squared relative error
 * (measure.h): independent small perturbations add up in KL to second order.  For
 * comparison: MIXED_KL_POW, Σ KL_k(rel_err_k) with KL_k the piecewise power law through
 * Linear k's three measured reference points (measure_predicted_kl; on llama-bpe-26m the
 * measured slopes are 1.6-2.2, and the quadratic chose the better plans on the
 * validation text: docs/QUALITY.md), MIXED_ERR_SQ, Σ rel_err² (every Linear equally
 * sensitive), and MIXED_ERR_ABS, Σ rel_err.  MIXED_NLL: Σ s_k · rel_err_k² with s_k the
 * increase of the calibration text's next-token NLL per unit squared relative error
 * (measure_nll_sensitivity): perplexity is the data's NLL, not the divergence from the
 * float model.  It needs a measurement that recorded ΔNLL (refused otherwise). */
#ifndef GPTQ_QUANT_MIXED_H
#define GPTQ_QUANT_MIXED_H

#include "quant/alloc.h"
#include "quant/gptq.h"
#include "quant/measure.h"

typedef enum { MIXED_KL = 0, MIXED_ERR_SQ, MIXED_ERR_ABS, MIXED_KL_POW, MIXED_NLL } mixed_objective;

typedef struct {
    int n;                 /* n_layers*LIN_COUNT + 1 (lm_head last, never changed) */
    gptq_params *layer_gp; /* (n) per-Linear settings for quant_options.layer_gp */
    int *choice;           /* (n) index into the measurement layer's entries, -1 if not quantizable */
    double target_bpw;
    int64_t params;        /* parameters of the quantizable Linears */
    int64_t budget_bits;   /* floor(target × params) */
    int64_t bits;          /* planned storage */
    double bpw;            /* bits / params */
    double predicted;      /* the objective's total (NAN for the heuristic without measurements) */
    alloc_stats st;        /* allocator statistics (measured plans) */
    qsetting base;         /* the heuristic's base setting */
} mixed_plan;

/* Allocates from a complete measurement (every quantizable Linear measured).  base gives
 * everything but bits/group/sym (act-order, damping, block, MSE) and the setting of
 * Linears with no menu entry (they stay in float in a checkpoint). */
int mixed_plan_measured(const measurement *ms, const gptq_params *base, double target_bpw, mixed_objective obj,
                        mixed_plan *p);
/* The llama.cpp-style plan: for each menu setting as the base, the Linears that
 * alloc_llamacpp_steps() names get that many steps up the menu's bit widths (same group
 * and grid; the base setting where the bumped one does not fit); the base whose plan has
 * the most bits within the budget wins (ties: fewer bumps' worth of the lower index).
 * Needs only ms's layer table (shapes, fitting entries), not its measurements. */
int mixed_plan_llamacpp(const measurement *ms, const gptq_params *base, double target_bpw, mixed_plan *p);
void mixed_plan_free(mixed_plan *p);

/* The measured relative error of Linear k at setting gp (NAN if not measured). */
double mixed_predicted_rel_err(const measurement *ms, int k, const gptq_params *gp);

#endif
