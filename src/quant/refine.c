#include "quant/refine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "quant/klwin.h"
#include "quant/pipeline.h"

double refine_fit(const double *r, const double *d, int n, double iso) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        const double r2 = r[i] * r[i];
        num += d[i] * r2, den += r2 * r2;
    }
    const double fit = den > 0 ? num / den : iso, floor_ = REFINE_FLOOR * iso;
    return fit > floor_ ? fit : floor_;
}

typedef struct {
    const measurement *ms;
    float **H;      /* (ms->n) each quantizable Linear's Hessian (in, in) from the float model */
    float **wq;     /* (ms->n * MEASURE_MAX_MENU) dequantized GPTQ weight of (Linear, entry), made on demand */
} refine_ctx;

static int r_wants(void *c, int k) {
    const measurement *ms = ((refine_ctx *)c)->ms;
    return k < ms->n && ms->layers[k].n_entries > 0;
}

static int r_run(void *c, int k, const linear *l, const float *h) {
    refine_ctx *rc = c;
    const size_t nn = (size_t)l->in * (size_t)l->in;
    rc->H[k] = xmalloc(sizeof(float) * nn);
    memcpy(rc->H[k], h, sizeof(float) * nn);
    return 0;
}

/* The entry of L with setting s, or -1. */
static int entry_of(const measure_layer *L, const qsetting *s) {
    for (int e = 0; e < L->n_entries; e++)
        if (L->entries[e].s.bits == s->bits && L->entries[e].s.group_size == s->group_size && L->entries[e].s.sym == s->sym)
            return e;
    return -1;
}

/* Makes the dequantized weights of Linear k at entries want[0..n-1] (those not made yet). */
static int make_weights(refine_ctx *rc, const llama_model *m, int k, const int *want, int n) {
    const measurement *ms = rc->ms;
    const measure_layer *L = &ms->layers[k];
    int todo[MEASURE_SENS_REFS + 1], nt = 0;
    for (int i = 0; i < n; i++)
        if (!rc->wq[(size_t)k * MEASURE_MAX_MENU + want[i]]) {
            int dup = 0;
            for (int j = 0; j < nt; j++) dup |= todo[j] == want[i];
            if (!dup) todo[nt++] = want[i];
        }
    if (nt == 0) return 0;
    const linear *l = &m->layers[L->layer].lin[L->id];
    const int64_t out = l->out, in = l->in;
    float *w = xaligned_alloc(sizeof(float) * (size_t)(out * in));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < out; r++) linear_row_f32(l, r, w + r * in);
    gptq_hinv hv;
    if (gptq_prepare(rc->H[k], in, ms->act_order, ms->damp, &hv) != 0) {
        free(w);
        return gptq_fail_context("%s", L->name);
    }
    int failed = 0;
    char msg[512] = "";
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < nt; i++) {
        const qsetting *s = &L->entries[todo[i]].s;
        gptq_params gp = gptq_default_params();
        gp.bits = s->bits, gp.group_size = s->group_size, gp.sym = s->sym;
        gp.act_order = ms->act_order, gp.mse = ms->mse, gp.damp = ms->damp, gp.block_size = ms->block;
        gptq_result res;
        if (gptq_quantize_prepared(w, rc->H[k], out, &hv, &gp, &res) != 0) {
#pragma omp critical(refine_fail)
            if (!failed) failed = 1, snprintf(msg, sizeof msg, "%s", gptq_last_error());
            continue;
        }
        rc->wq[(size_t)k * MEASURE_MAX_MENU + todo[i]] = res.q.wq;
        res.q.wq = NULL;
        gptq_result_free(&res);
    }
    gptq_hinv_free(&hv);
    free(w);
    if (failed) return gptq_fail("%s: %s", L->name, msg);
    return 0;
}

/* Points a Linear's weight at w (borrowed), or back at its original (w NULL). */
typedef struct {
    const void *w;
    gptq_dtype dtype;
    void *owned;
} orig_weight;

static void point_at(linear *l, const orig_weight *o, const float *w) {
    if (w) l->w = w, l->dtype = DT_F32, l->owned = NULL;
    else l->w = o->w, l->dtype = o->dtype, l->owned = o->owned;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int mixed_refine(llama_model *m, const calib_set *calib, const measurement *ms, const gptq_params *base, double target_bpw,
                 int rounds, mixed_plan *plan, double *sens_out, refine_stats *rs) {
    memset(rs, 0, sizeof *rs);
    if (rounds < 1 || rounds > REFINE_MAX_ROUNDS) return gptq_fail("--alloc-refine: 1 to %d rounds, not %d", REFINE_MAX_ROUNDS, rounds);
    if (ms->n != m->cfg.n_layers * LIN_COUNT) return gptq_fail("--alloc-refine: the measurement is of another model");
    for (int k = 0; k < ms->n; k++)
        if (ms->layers[k].n_entries > 0 && (!ms->layers[k].measured || ms->layers[k].n_sens < 1))
            return gptq_fail("--alloc-refine: %s has no measured sensitivity", ms->layers[k].name);
    const double t0 = now_seconds();
    refine_ctx rc = {ms, xcalloc((size_t)ms->n, sizeof(float *)), xcalloc((size_t)ms->n * MEASURE_MAX_MENU, sizeof(float *))};
    orig_weight *orig = xcalloc((size_t)ms->n, sizeof(orig_weight));
    double *sens = xmalloc(sizeof(double) * (size_t)ms->n), *ratio = xmalloc(sizeof(double) * (size_t)ms->n);
    for (int k = 0; k < ms->n; k++) {
        const linear *l = &m->layers[k / LIN_COUNT].lin[k % LIN_COUNT];
        orig[k] = (orig_weight){l->w, l->dtype, l->owned};
    }
    klwin kw = {0};
    int rc_ = 0;
    /* the Hessians: one calibration pass of the float model (measurement mode quantizes nothing) */
    {
        quant_measure_hook hook = {r_wants, r_run, &rc};
        quant_options o = measurement_options(ms, &hook);
        quant_result qr;
        rc_ = quantize_model(m, calib, &o, &qr);
        if (rc_ == 0) quant_result_free(&qr);
        rs->hessian_seconds = now_seconds() - t0;
    }
    /* the float model's outputs on the measurement's sensitivity windows */
    const int nw = ms->sens_windows < calib->n ? ms->sens_windows : calib->n;
    if (rc_ == 0) {
        if (nw < 1) rc_ = gptq_fail("--alloc-refine: the measurement has no sensitivity windows");
        for (int i = 0; rc_ == 0 && i < nw * calib->seqlen; i++)
            if (calib->ids[i] < 0 || calib->ids[i] >= m->cfg.vocab_size)
                rc_ = gptq_fail("calibration token id %d is outside the vocabulary (%d)", calib->ids[i], m->cfg.vocab_size);
    }
    if (rc_ == 0) {
        klwin_init(&kw, m, calib->ids, nw, calib->seqlen);
        klwin_run(&kw, KLWIN_REFERENCE, 0, NULL);
        rs->forwards++;
    }
    for (int round = 0; round < rounds && rc_ == 0; round++) {
        /* the plan's weights, and each Linear's reference settings */
        const double tg = now_seconds();
        for (int k = 0; k < ms->n && rc_ == 0; k++) {
            const measure_layer *L = &ms->layers[k];
            if (L->n_entries == 0 || plan->choice[k] < 0) continue;
            int w[MEASURE_SENS_REFS + 1], n = 0;
            w[n++] = plan->choice[k];
            for (int i = 0; i < L->n_sens; i++) {
                int e = entry_of(L, &L->sens[i].s);
                if (e >= 0) w[n++] = e;
            }
            rc_ = make_weights(&rc, m, k, w, n);
        }
        rs->gptq_seconds += now_seconds() - tg;
        if (rc_ != 0) break;
        for (int k = 0; k < ms->n; k++)
            if (plan->choice[k] >= 0)
                point_at(&m->layers[k / LIN_COUNT].lin[k % LIN_COUNT], &orig[k], rc.wq[(size_t)k * MEASURE_MAX_MENU + plan->choice[k]]);
        const double kl_p = klwin_run(&kw, KLWIN_INPUTS, 0, NULL);
        rs->forwards++;
        double pred_iso = 0, pred_ctx = 0;
        int nr = 0;
        for (int k = 0; k < ms->n; k++) {
            const measure_layer *L = &ms->layers[k];
            sens[k] = L->sensitivity;
            if (L->n_entries == 0 || plan->choice[k] < 0) continue;
            linear *l = &m->layers[L->layer].lin[L->id];
            const int ce = plan->choice[k];
            point_at(l, &orig[k], NULL);
            const double kl_f = klwin_run(&kw, KLWIN_KL, L->layer, NULL);
            rs->forwards++;
            double r[MEASURE_SENS_REFS + 1], d[MEASURE_SENS_REFS + 1];
            int n = 0;
            r[n] = L->entries[ce].rel_err, d[n++] = kl_p - kl_f;
            for (int i = 0; i < L->n_sens; i++) {
                int e = entry_of(L, &L->sens[i].s), dup = e == ce;
                for (int j = 0; j < i; j++) dup |= entry_of(L, &L->sens[j].s) == e;
                if (e < 0 || dup) continue;
                point_at(l, &orig[k], rc.wq[(size_t)k * MEASURE_MAX_MENU + e]);
                r[n] = L->entries[e].rel_err, d[n++] = klwin_run(&kw, KLWIN_KL, L->layer, NULL) - kl_f;
                rs->forwards++;
            }
            point_at(l, &orig[k], rc.wq[(size_t)k * MEASURE_MAX_MENU + ce]);
            sens[k] = refine_fit(r, d, n, L->sensitivity);
            const double r2 = L->entries[ce].rel_err * L->entries[ce].rel_err;
            pred_iso += L->sensitivity * r2, pred_ctx += sens[k] * r2;
            ratio[nr++] = L->sensitivity > 0 ? sens[k] / L->sensitivity : 1;
        }
        for (int k = 0; k < ms->n; k++) point_at(&m->layers[k / LIN_COUNT].lin[k % LIN_COUNT], &orig[k], NULL);
        qsort(ratio, (size_t)nr, sizeof(double), cmp_double);
        rs->kl_plan[round] = kl_p, rs->pred_iso[round] = pred_iso, rs->pred_ctx[round] = pred_ctx;
        rs->ratio_min[round] = nr ? ratio[0] : NAN, rs->ratio_max[round] = nr ? ratio[nr - 1] : NAN;
        rs->ratio_med[round] = nr ? (nr % 2 ? ratio[nr / 2] : 0.5 * (ratio[nr / 2 - 1] + ratio[nr / 2])) : NAN;
        /* allocate again with the in-context sensitivities */
        measurement c = *ms;
        c.layers = xmalloc(sizeof(measure_layer) * (size_t)ms->n);
        memcpy(c.layers, ms->layers, sizeof(measure_layer) * (size_t)ms->n);
        for (int k = 0; k < ms->n; k++) c.layers[k].sensitivity = sens[k];
        mixed_plan np;
        rc_ = mixed_plan_measured(&c, base, target_bpw, MIXED_KL, &np);
        free(c.layers);
        if (rc_ != 0) break;
        for (int k = 0; k < ms->n; k++) rs->changed[round] += np.choice[k] != plan->choice[k];
        mixed_plan_free(plan);
        *plan = np;
        rs->rounds = round + 1;
        if (sens_out) memcpy(sens_out, sens, sizeof(double) * (size_t)ms->n);
    }
    for (int k = 0; k < ms->n; k++) point_at(&m->layers[k / LIN_COUNT].lin[k % LIN_COUNT], &orig[k], NULL);
    if (kw.st) klwin_free(&kw);
    for (int k = 0; k < ms->n; k++) free(rc.H[k]);
    for (size_t i = 0; i < (size_t)ms->n * MEASURE_MAX_MENU; i++) free(rc.wq[i]);
    free(rc.H), free(rc.wq), free(orig), free(sens), free(ratio);
    rs->seconds = now_seconds() - t0;
    return rc_;
}
