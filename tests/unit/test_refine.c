/* In-context refinement of a mixed-precision plan (quant/refine.h):
 * - the fit of the in-context points (least squares through the origin, floored);
 * - in a context where every other Linear is at its most precise setting (nearly the
 *   float model), the in-context sensitivity is the fit of the measurement's own isolated
 *   KL points (the same GPTQ weights and windows, measured again in a different way);
 * - in a low-bit context it differs from the isolated one;
 * - the returned plan is the exact allocation under the returned sensitivities, the
 *   number of forward passes is what the method needs, and the model's weights are the
 *   float ones again afterwards (bit-identical logits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "model/llama.h"
#include "quant/measure.h"
#include "quant/mixed.h"
#include "quant/refine.h"
#include "text/calib.h"
#include "text/tokenizer.h"

static float *logits_of(llama_model *m, const int *ids, int n) {
    llama_state *st = llama_state_new(m, n, n);
    const float *lg = llama_forward(m, st, ids, n, 0, 1);
    float *out = malloc(sizeof(float) * (size_t)n * m->cfg.vocab_size);
    memcpy(out, lg, sizeof(float) * (size_t)n * m->cfg.vocab_size);
    llama_state_free(st);
    return out;
}

static int entry_of(const measure_layer *L, const qsetting *s) {
    for (int e = 0; e < L->n_entries; e++)
        if (L->entries[e].s.bits == s->bits && L->entries[e].s.group_size == s->group_size && L->entries[e].s.sym == s->sym)
            return e;
    return -1;
}

/* forward passes one round needs for plan p: the context, and per Linear float + the
 * distinct reference settings other than its plan setting */
static int forwards_needed(const measurement *ms, const mixed_plan *p) {
    int n = 1;
    for (int k = 0; k < ms->n; k++) {
        const measure_layer *L = &ms->layers[k];
        if (p->choice[k] < 0) continue;
        n++;
        for (int i = 0; i < L->n_sens; i++) {
            int e = entry_of(L, &L->sens[i].s), dup = e == p->choice[k];
            for (int j = 0; j < i; j++) dup |= entry_of(L, &L->sens[j].s) == e;
            n += !dup;
        }
    }
    return n;
}

/* the plan is the allocator's optimum under sensitivities sens */
static int is_allocation(const measurement *ms, const gptq_params *base, double target, const double *sens, const mixed_plan *p) {
    measurement c = *ms;
    c.layers = malloc(sizeof(measure_layer) * (size_t)ms->n);
    memcpy(c.layers, ms->layers, sizeof(measure_layer) * (size_t)ms->n);
    for (int k = 0; k < ms->n; k++) c.layers[k].sensitivity = sens[k];
    mixed_plan q;
    int same = mixed_plan_measured(&c, base, target, MIXED_KL, &q) == 0;
    for (int k = 0; same && k < ms->n; k++) same = q.choice[k] == p->choice[k];
    if (same) same = fabs(q.predicted - p->predicted) <= 1e-12 * fabs(q.predicted) && q.bits == p->bits;
    mixed_plan_free(&q);
    free(c.layers);
    return same;
}

int main(void) {
    /* the fit */
    {
        const double r[3] = {0.1, 0.2, 0.05}, d[3] = {0.003, 0.012, 0.00075};
        CHECK_CLOSE(refine_fit(r, d, 3, 1.0), 0.3, 1e-12, "quadratic points: their coefficient");
        const double dn[3] = {0.004, 0.010, 0.0};
        const double want = (0.004 * 0.01 + 0.010 * 0.04) / (1e-4 + 16e-4 + 0.0625e-4);
        CHECK_CLOSE(refine_fit(r, dn, 3, 1.0), want, 1e-12, "noisy points: sum d r^2 / sum r^4");
        const double neg[3] = {-0.001, -0.002, 0.0};
        CHECK_CLOSE(refine_fit(r, neg, 3, 0.5), REFINE_FLOOR * 0.5, 1e-15, "a negative fit is floored");
        const double z[1] = {0}, dz[1] = {0.1};
        CHECK_CLOSE(refine_fit(z, dz, 1, 0.7), 0.7, 1e-15, "no error at all: the isolated sensitivity");
    }

    const char *dir = check_shared("models/stories260K");
    const char *cal = check_shared("data/calib/calib_mix.txt");
    llama_model m;
    CHECK(llama_load(&m, dir) == 0, "load: %s", gptq_last_error());
    tokenizer *tok = tokenizer_load(dir);
    calib_set calib;
    CHECK(tok && calib_from_file(&calib, tok, cal, 8, 64, 3) == 0, "calib: %s", gptq_last_error());
    measurement ms = {0};
    measure_default_menu(&ms, 0);
    CHECK(measurement_init(&ms, &m, dir, &calib, 0.01f, 1, 0, 128) == 0, "init: %s", gptq_last_error());
    CHECK(measure_model(&m, &calib, &ms, NULL) == 0, "measure: %s", gptq_last_error());
    float *before = logits_of(&m, calib.ids, calib.seqlen);
    gptq_params base = gptq_default_params();
    base.act_order = 1;
    double *sens = malloc(sizeof(double) * (size_t)ms.n);
    refine_stats rs;

    /* bad rounds */
    mixed_plan p;
    CHECK(mixed_plan_measured(&ms, &base, 100.0, MIXED_KL, &p) == 0, "plan: %s", gptq_last_error());
    CHECK(mixed_refine(&m, &calib, &ms, &base, 100.0, 0, &p, sens, &rs) != 0, "0 rounds refused");

    /* nearly float context: every Linear at its least-error setting (what a huge target buys) */
    const int need_hi = forwards_needed(&ms, &p) + 1; /* + the float reference */
    CHECK(mixed_refine(&m, &calib, &ms, &base, 100.0, 1, &p, sens, &rs) == 0, "refine: %s", gptq_last_error());
    CHECK(rs.rounds == 1 && rs.forwards == need_hi, "forward passes %d, expected %d", rs.forwards, need_hi);
    CHECK(rs.kl_plan[0] > 0 && rs.kl_plan[0] < 1e-3, "the 8-bit plan is near the float model: KL %g", rs.kl_plan[0]);
    int checked = 0;
    for (int k = 0; k < ms.n; k++) {
        const measure_layer *L = &ms.layers[k];
        /* (gate/up of this model fit only 8-bit settings: their KLs are as small as the context's) */
        if (L->n_entries == 0 || L->sens_ref.bits != 3) continue;
        /* the isolated points, with the plan setting's (≈ 0) one */
        double num = 0, den = 0;
        for (int i = 0; i < L->n_sens; i++) {
            int e = entry_of(L, &L->sens[i].s), dup = e == p.choice[k];
            for (int j = 0; j < i; j++) dup |= entry_of(L, &L->sens[j].s) == e;
            if (dup) continue;
            const double r2 = L->sens[i].rel_err * L->sens[i].rel_err;
            num += L->sens[i].kl * r2, den += r2 * r2;
        }
        const double rp = L->entries[p.choice[k]].rel_err;
        den += rp * rp * rp * rp;
        const double want = num / den;
        CHECK(fabs(sens[k] - want) <= 0.05 * want, "%s: in a nearly float context %g, isolated points give %g", L->name, sens[k],
              want);
        checked++;
    }
    CHECK(checked == 20, "20 Linears with 2/3/4-bit references compared (%d)", checked);
    CHECK(is_allocation(&ms, &base, 100.0, sens, &p), "the refined plan is the allocation under its sensitivities");
    float *after = logits_of(&m, calib.ids, calib.seqlen);
    CHECK(memcmp(before, after, sizeof(float) * (size_t)calib.seqlen * m.cfg.vocab_size) == 0, "float weights restored");
    free(after);
    mixed_plan_free(&p);

    /* a low-bit context (the smallest plans need 6.55 bpw: gate/up fit 8 bits only): two
     * rounds; the sensitivities move away from the isolated ones */
    const double low = 6.7;
    CHECK(mixed_plan_measured(&ms, &base, low, MIXED_KL, &p) == 0, "plan: %s", gptq_last_error());
    CHECK(mixed_refine(&m, &calib, &ms, &base, low, 2, &p, sens, &rs) == 0, "refine: %s", gptq_last_error());
    CHECK(rs.rounds == 2 && p.bits <= p.budget_bits, "two rounds within the budget");
    CHECK(rs.ratio_min[0] < 0.97 || rs.ratio_max[0] > 1.03, "context changes the sensitivities: %g..%g", rs.ratio_min[0],
          rs.ratio_max[0]);
    CHECK(rs.kl_plan[0] > 1e-3, "a low-bit plan is far from the float model: KL %g", rs.kl_plan[0]);
    CHECK(is_allocation(&ms, &base, low, sens, &p), "the round-2 plan is the allocation under its sensitivities");
    after = logits_of(&m, calib.ids, calib.seqlen);
    CHECK(memcmp(before, after, sizeof(float) * (size_t)calib.seqlen * m.cfg.vocab_size) == 0, "float weights restored");
    free(after);
    mixed_plan_free(&p);

    free(before), free(sens);
    measurement_free(&ms);
    calib_free(&calib);
    tokenizer_free(tok);
    llama_free(&m);
    return check_done();
}
