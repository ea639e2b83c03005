/* In-context refinement of a measured mixed-precision plan (`quantize --alloc-refine N`).
 *
 * The measurement's sensitivity of Linear k is the KL of the model's output with k alone
 * quantized and everything else float; the allocator sums those (mixed.h).  In the plan's
 * model everything else is quantized too, which changes what k's error costs: the layers
 * after k no longer pass it through as the float ones do, and k's error adds to (or
 * cancels) the others' in the output.  Second order, KL(Δ) ≈ ½ΔᵀFΔ over all Linears'
 * weight errors Δ; the isolated sensitivities keep only the diagonal blocks F_kk at the
 * float model.  With the other Linears fixed at plan P, moving k from float to setting
 * c costs
 *     KL(P, k→c) − KL(P, k→float) = ½Δ_k(c)ᵀF_kk(P)Δ_k(c) + Δ_k(c)ᵀ Σ_j≠k F_kj Δ_j,
 * the in-context marginal cost.  A round measures it directly: the plan's model is built
 * from GPTQ weights (the measurement's quantizations: float-model Hessians), and for each
 * Linear k the model's output KL from the float model is measured with k put back to
 * float and with k at each of its KL reference settings (2/3/4-bit g128 asym, the
 * measurement's), k's plan setting being the plan's own KL.  Those points (rel_err_c,
 * cost_c) give k's in-context sensitivity by the least-squares fit through the origin
 * against rel_err², Σ cost·r² / Σ r⁴ (the cross term is linear in Δ_k and its sign
 * depends on the rounding, so it averages out of a fit over several settings rather than
 * being attributed to one; the final quantization rounds differently anyway), floored at
 * REFINE_FLOOR × the isolated sensitivity so that no Linear looks free.  The plan is
 * then allocated again with these sensitivities (the kl objective, exactly, as before);
 * a further round measures in the new plan's context.
 *
 * Cost per round: the calibration forward with Hessians (once for all rounds; no
 * quantization of the model), GPTQ of each Linear at up to four settings (cached across
 * rounds), and per Linear two to four forward passes over the sensitivity windows from
 * its block on.  It depends on the target (the plan), so every target pays it. */
#ifndef GPTQ_QUANT_REFINE_H
#define GPTQ_QUANT_REFINE_H

#include "model/llama.h"
#include "quant/measure.h"
#include "quant/mixed.h"
#include "text/calib.h"

#define REFINE_MAX_ROUNDS 8
#define REFINE_FLOOR 0.1

typedef struct {
    int rounds;                         /* rounds run */
    double seconds;                     /* Hessians, GPTQ, forward passes and allocations */
    double hessian_seconds;             /* of which the calibration pass for the Hessians */
    double gptq_seconds;                /* the GPTQ quantizations */
    int forwards;                       /* forward passes over the windows */
    double kl_plan[REFINE_MAX_ROUNDS];  /* measured KL of the context plan of each round (the windows) */
    double pred_iso[REFINE_MAX_ROUNDS]; /* Σ isolated sensitivity · r² of that plan */
    double pred_ctx[REFINE_MAX_ROUNDS]; /* Σ in-context sensitivity · r² of that plan */
    double ratio_min[REFINE_MAX_ROUNDS], ratio_med[REFINE_MAX_ROUNDS], ratio_max[REFINE_MAX_ROUNDS]; /* in-context / isolated */
    int changed[REFINE_MAX_ROUNDS];     /* Linears whose setting the round's new plan changed */
} refine_stats;

/* The in-context sensitivity of one Linear from n points (rel_err r[i], in-context cost
 * d[i]): Σ d·r² / Σ r⁴, floored at REFINE_FLOOR × iso (iso also when no point has r > 0). */
double refine_fit(const double *r, const double *d, int n, double iso);

/* Refines *plan (made by mixed_plan_measured from ms with the kl objective for target
 * target_bpw) by `rounds` rounds (1..REFINE_MAX_ROUNDS) as above; m must hold the float
 * weights the measurement saw (it does again on return).  *plan is replaced by the last
 * round's allocation (its `predicted` is the in-context objective).  sens_out (ms->n, may
 * be NULL) receives the last round's in-context sensitivities. */
int mixed_refine(llama_model *m, const calib_set *calib, const measurement *ms, const gptq_params *base, double target_bpw,
                 int rounds, mixed_plan *plan, double *sens_out, refine_stats *rs);

#endif
