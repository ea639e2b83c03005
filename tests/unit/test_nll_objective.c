/* The nll objective of mixed precision (quant/measure.h, quant/mixed.h): each Linear's
 * coefficient is the least-squares fit through the origin of its measured ΔNLL points
 * against rel_err², floored at MEASURE_NLL_FLOOR × its KL sensitivity (noise can make
 * ΔNLL negative), NAN when a point lacks ΔNLL (an older file), which the allocator
 * refuses; and the allocator ranks Linears by ΔNLL, not by KL, under this objective. */
#include <math.h>

#include "check.h"
#include "core/error.h"
#include "quant/measure.h"
#include "quant/mixed.h"

/* A Linear with settings w3 g128 (rel 0.1), w2 g128 (rel 0.2), w4 g128 (rel 0.05), w8
 * per-row (rel 0.003); KL = kc·r² and ΔNLL = d3, d2, d4 at the first three (the order
 * of MEASURE_SENS_BITS). */
static void make_layer(measure_layer *L, measure_entry *e, const char *name, double kc, double d3, double d2, double d4) {
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "%s", name);
    L->out = L->in = 256;
    L->measured = 1;
    L->n_entries = 4;
    L->entries = e;
    e[0] = (measure_entry){{3, 128, 0}, 1000, 0.1, 0};
    e[1] = (measure_entry){{2, 128, 0}, 700, 0.2, 0};
    e[2] = (measure_entry){{4, 128, 0}, 1300, 0.05, 0};
    e[3] = (measure_entry){{8, -1, 0}, 2100, 0.003, 0};
    const double d[3] = {d3, d2, d4};
    L->n_sens = 3;
    for (int i = 0; i < 3; i++) L->sens[i] = (measure_sens){e[i].s, e[i].rel_err, kc * e[i].rel_err * e[i].rel_err, d[i]};
    L->sens_ref = e[0].s, L->sens_kl = kc * 0.01, L->sensitivity = kc;
}

int main(void) {
    measure_layer L;
    measure_entry e[4];

    /* exactly quadratic ΔNLL (0.3 r²): the coefficient is 0.3 */
    make_layer(&L, e, "model.layers.0.self_attn.q_proj", 0.4, 0.003, 0.012, 0.00075);
    CHECK_CLOSE(measure_nll_sensitivity(&L), 0.3, 1e-12, "quadratic data: its coefficient");
    /* noisy points: the least-squares fit through the origin, Σ d r² / Σ r⁴ */
    make_layer(&L, e, "model.layers.0.self_attn.q_proj", 0.4, 0.0011, 0.0035, 0.0003);
    const double fit = (0.0011 * 0.01 + 0.0035 * 0.04 + 0.0003 * 0.0025) / (0.0001 + 0.0016 + 0.00000625);
    CHECK_CLOSE(measure_nll_sensitivity(&L), fit, 1e-12, "noisy data: least squares through the origin");
    /* a negative 4-bit point (noise) lowers the fit but does not make it negative */
    make_layer(&L, e, "model.layers.0.self_attn.q_proj", 0.4, 0.003, 0.012, -0.002);
    CHECK(measure_nll_sensitivity(&L) > 0.25 && measure_nll_sensitivity(&L) < 0.3, "one negative point: %g",
          measure_nll_sensitivity(&L));
    /* a Linear whose quantization seems to help the data: floored at a tenth of its KL sensitivity */
    make_layer(&L, e, "model.layers.0.self_attn.q_proj", 0.4, -0.001, -0.003, 0.0001);
    CHECK_CLOSE(measure_nll_sensitivity(&L), MEASURE_NLL_FLOOR * 0.4, 1e-12, "negative fit: the floor");
    CHECK(MEASURE_NLL_FLOOR > 0 && MEASURE_NLL_FLOOR < 1, "the floor is a fraction of the KL sensitivity");
    /* an older file: no ΔNLL */
    make_layer(&L, e, "model.layers.0.self_attn.q_proj", 0.4, 0.003, NAN, 0.00075);
    CHECK(isnan(measure_nll_sensitivity(&L)), "a point without dnll: NAN");
    L.n_sens = 0;
    CHECK(isnan(measure_nll_sensitivity(&L)), "no points (format 2): NAN");

    /* the allocator: by KL, A (0.4) is more sensitive than B (0.2); by ΔNLL, B (0.3) more
     * than A (0.1).  Budget 2300 bits over 2 × 65536 parameters: one Linear at 4 bits, the
     * other at 3.  kl: (A4, B3) = 0.001 + 0.002 < (A3, B4) = 0.004 + 0.0005;
     * nll: (A3, B4) = 0.001 + 0.00075 < (A4, B3) = 0.00025 + 0.003 */
    measurement ms = {0};
    ms.n_layers = 1;
    ms.n = 2;
    measure_layer layers[2];
    measure_entry ea[4], eb[4];
    ms.layers = layers;
    make_layer(&layers[0], ea, "model.layers.0.self_attn.q_proj", 0.4, 0.001, 0.004, 0.00025);
    make_layer(&layers[1], eb, "model.layers.0.self_attn.k_proj", 0.2, 0.003, 0.012, 0.00075);
    gptq_params base = gptq_default_params();
    const double target = 2300.0 / (2.0 * 256 * 256);
    mixed_plan pk, pn;
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_KL, &pk) == 0, "kl plan: %s", gptq_last_error());
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_NLL, &pn) == 0, "nll plan: %s", gptq_last_error());
    CHECK(pk.choice[0] == 2 && pk.choice[1] == 0, "kl: A at 4 bits, B at 3 (%d, %d)", pk.choice[0], pk.choice[1]);
    CHECK(pn.choice[0] == 0 && pn.choice[1] == 2, "nll: A at 3 bits, B at 4 (%d, %d)", pn.choice[0], pn.choice[1]);
    CHECK_CLOSE(pn.predicted, 0.1 * 0.01 + 0.3 * 0.0025, 1e-12, "nll predicted total: predicted ΔNLL");
    CHECK(pn.bits == 2300 && pn.bits <= pn.budget_bits, "nll plan fills the budget (%lld bits)", (long long)pn.bits);
    mixed_plan_free(&pk), mixed_plan_free(&pn);

    /* a measurement without ΔNLL: the nll objective refuses, naming the Linear; kl still plans */
    layers[1].sens[2].dnll = NAN;
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_NLL, &pn) == -1 &&
              strstr(gptq_last_error(), "k_proj was measured without the NLL sensitivities"),
          "nll refuses an older measurement: %s", gptq_last_error());
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_KL, &pk) == 0, "kl plans it: %s", gptq_last_error());
    mixed_plan_free(&pk);
    return check_done();
}
