/* Bit allocation for mixed precision: one quantization setting per Linear so that the
 * total predicted error is least while the total storage stays within a bit budget
 * (target bits per weight × quantized parameters; scales, zeros and g_idx counted).
 *
 * This is a multiple-choice knapsack, solved exactly by dynamic programming over the
 * budget: each layer's costs are taken above its cheapest option, and all those extra
 * costs share a common divisor u (for Llama shapes a multiple of 512 bits: every tensor
 * dimension is a multiple of 32 or more), so the DP runs over budget/u cells, exactly.
 * When that table would be too large (odd shapes), the DP runs on a coarser unit twice:
 * with costs rounded down (a relaxation: its optimum is a lower bound, and when its
 * choice also fits the exact budget it is optimal) and rounded up (always feasible); the
 * result says whether it is proven optimal and gives the lower bound otherwise.
 * Not greedy: a greedy "best error per bit" upgrade order can miss the optimum when the
 * error curves are not convex, which GPTQ's are not across group sizes.
 *
 * Also here: the llama.cpp-style rule (more bits for attention v, MLP down and some
 * layers, as llama.cpp's k-quant mixes give them), used for comparison. */
#ifndef GPTQ_QUANT_ALLOC_H
#define GPTQ_QUANT_ALLOC_H

#include <stdint.h>

/* One Linear's options. */
typedef struct {
    int n;               /* options (1..255) */
    const double *err;   /* (n) predicted error of each option (finite, >= 0) */
    const int64_t *bits; /* (n) exact storage bits of each option (>= 0) */
} alloc_layer;

typedef struct {
    double err;          /* total predicted error of the returned choice */
    int64_t bits;        /* its total storage bits (<= budget) */
    int exact;           /* 1: proven optimal */
    double lower_bound;  /* no feasible choice has less error (== err when exact) */
    int64_t unit;        /* bits per DP cell */
    int64_t cells;       /* DP cells per layer */
} alloc_stats;

/* Chooses choice[i] in 0..layers[i].n-1 minimizing Σ err subject to Σ bits <= budget.
 * Ties go to the lower option index.  -1 + error when even the cheapest options exceed
 * the budget (the message gives what they need) or on bad input. */
int alloc_solve(const alloc_layer *layers, int n, int64_t budget, int *choice, alloc_stats *st);
/* The same with a cap on the DP table (layers × cells); alloc_solve uses 1<<26. */
int alloc_solve_ex(const alloc_layer *layers, int n, int64_t budget, int64_t max_table, int *choice, alloc_stats *st);

/* A quantization setting of one Linear (act-order, damping etc. are run-wide). */
typedef struct {
    int bits;       /* 2, 3, 4, 8 */
    int group_size; /* > 0, or -1 for one group per row */
    int sym;
} qsetting;

/* The llama.cpp rule for which tensors get more bits (its use_more_bits(): the first and
 * last eighth of the layers and every third layer between).  For Linear `lin` (LIN_* of
 * model/llama.h) of block `layer` out of n_layers, the number of bit-width steps above
 * the base setting, following llama.cpp's Q3_K_M / Q4_K_M mixes: attention v and MLP
 * down one step, two in use_more_bits layers; attention output one step when the base is
 * 3 bits or less (its Q2_K / Q3_K rules); everything else none. */
int alloc_llamacpp_steps(int layer, int n_layers, int lin, int base_bits);

#endif
