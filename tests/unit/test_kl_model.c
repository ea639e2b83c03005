/* The per-Linear KL model of mixed precision (quant/measure.h): the piecewise power law
 * through the KLs measured at the reference settings passes through every point,
 * interpolates linearly in log-log space between them, extrapolates beyond them along the
 * nearest segment's slope clamped to [1, 3], keeps KL monotone in the error, and falls
 * back to the one-reference quadratic with fewer than two usable points; the allocator's
 * kl-pow objective uses it (kl, the default, is the quadratic). */
#include <math.h>

#include "check.h"
#include "core/error.h"
#include "quant/measure.h"
#include "quant/mixed.h"

/* A Linear with settings w3 g128 (rel 0.1), w2 g128 (rel 0.2), w4 g128 (rel 0.05), w8
 * per-row (rel 0.003); reference KLs k3, k2, k4 at the first three (in the order of
 * MEASURE_SENS_BITS). */
static void make_layer(measure_layer *L, measure_entry *e, double k3, double k2, double k4) {
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "model.layers.0.self_attn.q_proj");
    L->out = L->in = 256;
    L->measured = 1;
    L->n_entries = 4;
    L->entries = e;
    e[0] = (measure_entry){{3, 128, 0}, 1000, 0.1, 0};
    e[1] = (measure_entry){{2, 128, 0}, 700, 0.2, 0};
    e[2] = (measure_entry){{4, 128, 0}, 1300, 0.05, 0};
    e[3] = (measure_entry){{8, -1, 0}, 2100, 0.003, 0};
    const double k[3] = {k3, k2, k4};
    L->n_sens = 3;
    for (int i = 0; i < 3; i++) L->sens[i] = (measure_sens){e[i].s, e[i].rel_err, k[i], NAN};
    L->sens_ref = e[0].s, L->sens_kl = k3, L->sensitivity = k3 / (0.1 * 0.1);
}

int main(void) {
    measure_layer L;
    measure_entry e[4];

    /* exactly quadratic data (KL = 0.4 r^2): the law is the quadratic everywhere */
    make_layer(&L, e, 0.004, 0.016, 0.001);
    CHECK_CLOSE(measure_predicted_kl(&L, 0.003), 0.4 * 0.003 * 0.003, 1e-9, "quadratic at 8 bits");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.07), 0.4 * 0.07 * 0.07, 1e-9, "quadratic between");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.3), 0.4 * 0.09, 1e-9, "quadratic above the 2-bit point");

    /* slope 1.5 between 4 and 3 bits, 2.5 between 3 and 2 */
    const double k4 = 0.004 * pow(0.5, 1.5), k2 = 0.004 * pow(2.0, 2.5);
    make_layer(&L, e, 0.004, k2, k4);
    CHECK_CLOSE(measure_predicted_kl(&L, 0.1), 0.004, 1e-9, "through the 3-bit point");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), k4, 1e-9, "through the 4-bit point");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.2), k2, 1e-9, "through the 2-bit point");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.07), 0.004 * pow(0.7, 1.5), 1e-9, "between 4 and 3 bits: slope 1.5");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.14), 0.004 * pow(1.4, 2.5), 1e-9, "between 3 and 2 bits: slope 2.5");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.003), k4 * pow(0.003 / 0.05, 1.5), 1e-9, "8 bits: the 4-3 slope");
    CHECK(measure_predicted_kl(&L, 0.003) > 0.4 * 0.003 * 0.003, "a flatter law values 8 bits less than the quadratic");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.4), k2 * pow(2.0, 2.5), 1e-9, "beyond 2 bits: the 3-2 slope");

    /* slopes beyond the points are clamped: 6 -> 3 below, 0.5 -> 1 above */
    make_layer(&L, e, 0.004, 0.004 * pow(2.0, 0.5), 0.004 / 64);
    CHECK_CLOSE(measure_predicted_kl(&L, 0.025), 0.004 / 64 / 8, 1e-9, "steep slope clamped to 3");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.4), 0.004 * pow(2.0, 0.5) * 2, 1e-9, "flat slope clamped to 1");
    /* a point below a smaller error's KL (noise) is raised to it: monotone */
    make_layer(&L, e, 0.004, 0.003, 0.001);
    CHECK_CLOSE(measure_predicted_kl(&L, 0.2), 0.004, 1e-9, "2-bit KL raised to the 3-bit one");
    CHECK(measure_predicted_kl(&L, 0.15) >= measure_predicted_kl(&L, 0.1), "monotone");

    /* fallbacks to sensitivity r^2: no points (a format-2 file), one usable point, repeated points */
    make_layer(&L, e, 0.004, 0.016, 0.001);
    L.n_sens = 0;
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), 0.4 * 0.0025, 1e-12, "no points: sensitivity r^2");
    make_layer(&L, e, 0.004, 0, 0);
    L.sensitivity = 0.3;
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), 0.3 * 0.0025, 1e-12, "one positive KL: quadratic");
    make_layer(&L, e, 0.004, 0.016, 0.001);
    L.sens[1] = L.sens[2] = L.sens[0];
    L.sensitivity = 0.3;
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), 0.3 * 0.0025, 1e-12, "one point three times: quadratic");
    /* two usable points: the line through them */
    make_layer(&L, e, 0.004, 0, 0.002);
    CHECK_CLOSE(measure_predicted_kl(&L, 0.07), 0.004 * 0.7, 1e-9, "two points: slope 1 between");

    /* the allocator: with a flat law (exponent 1) for Linear A, its 4-bit step saves half
     * its 3-bit KL instead of the quadratic's three quarters, so for one budget kl and
     * kl-pow choose differently; each plan is the optimum of its own objective */
    measurement ms = {0};
    ms.n_layers = 1;
    ms.n = 2;
    measure_layer layers[2];
    measure_entry ea[4], eb[4];
    ms.layers = layers;
    make_layer(&layers[0], ea, 0.004, 0.008, 0.002);      /* A: exponent 1 */
    make_layer(&layers[1], eb, 0.0015, 0.006, 0.000375); /* B: quadratic */
    snprintf(layers[1].name, sizeof layers[1].name, "model.layers.0.self_attn.k_proj");
    gptq_params base = gptq_default_params();
    mixed_plan pq, pk;
    /* 3100 bits over 2 x 65536 params: (A 8 bits, B 3 bits) = 3100 or (4, 4) = 2600 fit, (8, 4) does not
     * (nor is 2 bits worth it: (8, 2) = 2800 costs B 0.006).
     * quadratic: (4,4) = 0.001 + 0.000375 < (8,3) = 0.0000036 + 0.0015;
     * power law: (4,4) = 0.002 + 0.000375 > (8,3) = 0.004*0.03 + 0.0015 */
    const double target = 3100.0 / (2.0 * 256 * 256);
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_KL, &pq) == 0, "kl plan (quadratic): %s", gptq_last_error());
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_KL_POW, &pk) == 0, "kl-pow plan: %s", gptq_last_error());
    CHECK(pq.choice[0] == 2 && pq.choice[1] == 2, "kl: both at 4 bits (%d, %d)", pq.choice[0], pq.choice[1]);
    CHECK_CLOSE(pq.predicted, 0.001 + 0.000375, 1e-9, "kl predicted total");
    CHECK(pk.choice[0] == 3 && pk.choice[1] == 0, "kl-pow: A at 8 bits, B at 3 (%d, %d)", pk.choice[0], pk.choice[1]);
    CHECK_CLOSE(pk.predicted, 0.004 * 0.03 + 0.0015, 1e-9, "kl-pow predicted total uses the power law");
    mixed_plan_free(&pq), mixed_plan_free(&pk);
    return check_done();
}
