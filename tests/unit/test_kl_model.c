/* The per-Linear KL model of mixed precision (quant/measure.h): the power law through the
 * KLs measured at two reference settings passes through both points, interpolates and
 * extrapolates along the fitted exponent, clamps that exponent to [1, 3], falls back to
 * the one-reference quadratic when the second point is missing or unusable; and the
 * allocator's kl objective uses it (kl-quad keeps the quadratic). */
#include <math.h>

#include "check.h"
#include "core/error.h"
#include "quant/measure.h"
#include "quant/mixed.h"

/* A Linear with settings w3 g128 (rel r3), w4 g128 (rel r4), w8 per-row (rel r8). */
static void make_layer(measure_layer *L, measure_entry *e, double r3, double r4, double r8, double k3, double k4) {
    memset(L, 0, sizeof *L);
    snprintf(L->name, sizeof L->name, "model.layers.0.self_attn.q_proj");
    L->out = L->in = 256;
    L->measured = 1;
    L->n_entries = 3;
    L->entries = e;
    e[0] = (measure_entry){{3, 128, 0}, 1000, r3, 0};
    e[1] = (measure_entry){{4, 128, 0}, 1300, r4, 0};
    e[2] = (measure_entry){{8, -1, 0}, 2100, r8, 0};
    L->sens_ref = e[0].s, L->sens_kl = k3, L->sensitivity = k3 / (r3 * r3);
    L->sens_ref2 = e[1].s, L->sens_kl2 = k4;
}

int main(void) {
    measure_layer L;
    measure_entry e[3];

    /* exactly quadratic data: the power law is the quadratic */
    make_layer(&L, e, 0.1, 0.05, 0.003, 0.004, 0.001);
    CHECK_CLOSE(measure_kl_exponent(&L), 2.0, 1e-12, "quadratic exponent");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.003), 0.4 * 0.003 * 0.003, 1e-9, "quadratic at 8 bits");

    /* exponent 1.5: through both points, along the line between and beyond */
    const double k4 = 0.004 * pow(0.5, 1.5);
    make_layer(&L, e, 0.1, 0.05, 0.003, 0.004, k4);
    CHECK_CLOSE(measure_kl_exponent(&L), 1.5, 1e-12, "exponent 1.5");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.1), 0.004, 1e-9, "through the 3-bit point");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), k4, 1e-9, "through the 4-bit point");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.07), 0.004 * pow(0.7, 1.5), 1e-9, "between");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.003), 0.004 * pow(0.03, 1.5), 1e-9, "8 bits: extrapolated at 1.5");
    CHECK(measure_predicted_kl(&L, 0.003) > 0.4 * 0.003 * 0.003, "a flatter law values 8 bits less than the quadratic");

    /* a steep slope is clamped to 3, through the geometric middle of the points */
    make_layer(&L, e, 0.1, 0.05, 0.003, 0.004, 0.004 / 64); /* exponent 6 */
    CHECK_CLOSE(measure_kl_exponent(&L), 3.0, 1e-12, "clamped to 3");
    const double km = sqrt(0.004 * 0.004 / 64), rm = sqrt(0.1 * 0.05);
    CHECK_CLOSE(measure_predicted_kl(&L, 0.02), km * pow(0.02 / rm, 3), 1e-9, "clamped law through the middle");
    /* and a rising one (KL larger at 4 bits: noise) to 1 */
    make_layer(&L, e, 0.1, 0.05, 0.003, 0.004, 0.005);
    CHECK_CLOSE(measure_kl_exponent(&L), 1.0, 1e-12, "clamped to 1");
    CHECK(measure_predicted_kl(&L, 0.003) < measure_predicted_kl(&L, 0.05), "still monotone in the error");

    /* fallbacks to sensitivity·r²: second KL missing (a format-2 file), zero, or the same point */
    make_layer(&L, e, 0.1, 0.05, 0.003, 0.004, NAN);
    CHECK_CLOSE(measure_kl_exponent(&L), 2.0, 0, "missing second KL: quadratic");
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), 0.4 * 0.0025, 1e-12, "missing second KL: sensitivity r^2");
    make_layer(&L, e, 0.1, 0.05, 0.003, 0.004, 0);
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), 0.4 * 0.0025, 1e-12, "zero second KL: quadratic");
    make_layer(&L, e, 0.1, 0.05, 0.003, 0.004, 0.001);
    L.sens_ref2 = L.sens_ref;
    CHECK_CLOSE(measure_predicted_kl(&L, 0.05), 0.4 * 0.0025, 1e-12, "same reference twice: quadratic");

    /* the allocator: with a flat law (exponent 1) for Linear A, its 4-bit step saves half
     * its 3-bit KL instead of the quadratic's three quarters, so for one budget kl and
     * kl-quad choose differently; each plan is the optimum of its own objective */
    measurement ms = {0};
    ms.n_layers = 1;
    ms.n = 2;
    measure_layer layers[2];
    measure_entry ea[3], eb[3];
    ms.layers = layers;
    make_layer(&layers[0], ea, 0.1, 0.05, 0.003, 0.004, 0.002);      /* A: exponent 1 */
    make_layer(&layers[1], eb, 0.1, 0.05, 0.003, 0.0015, 0.000375); /* B: quadratic */
    snprintf(layers[1].name, sizeof layers[1].name, "model.layers.0.self_attn.k_proj");
    gptq_params base = gptq_default_params();
    mixed_plan pq, pk;
    /* 3100 bits over 2 x 65536 params: (A 8 bits, B 3 bits) = 3100 or (4, 4) = 2600 fit, (8, 4) does not.
     * quadratic: (4,4) = 0.001 + 0.000375 < (8,3) = 0.0000036 + 0.0015;
     * power law: (4,4) = 0.002 + 0.000375 > (8,3) = 0.004*0.03 + 0.0015 */
    const double target = 3100.0 / (2.0 * 256 * 256);
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_KL_QUAD, &pq) == 0, "kl-quad plan: %s", gptq_last_error());
    CHECK(mixed_plan_measured(&ms, &base, target, MIXED_KL, &pk) == 0, "kl plan: %s", gptq_last_error());
    CHECK(pq.choice[0] == 1 && pq.choice[1] == 1, "kl-quad: both at 4 bits (%d, %d)", pq.choice[0], pq.choice[1]);
    CHECK_CLOSE(pq.predicted, 0.001 + 0.000375, 1e-9, "kl-quad predicted total");
    CHECK(pk.choice[0] == 2 && pk.choice[1] == 0, "kl: A at 8 bits, B at 3 (%d, %d)", pk.choice[0], pk.choice[1]);
    CHECK_CLOSE(pk.predicted, 0.004 * 0.03 + 0.0015, 1e-9, "kl predicted total uses the power law");
    mixed_plan_free(&pq), mixed_plan_free(&pk);
    return check_done();
}
