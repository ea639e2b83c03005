#include "quant/mixed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static void plan_init(mixed_plan *p, const measurement *ms, const gptq_params *base, double target) {
    memset(p, 0, sizeof *p);
    p->n = ms->n + 1;
    p->layer_gp = xmalloc(sizeof(gptq_params) * (size_t)p->n);
    p->choice = xmalloc(sizeof(int) * (size_t)p->n);
    for (int k = 0; k < p->n; k++) p->layer_gp[k] = *base, p->choice[k] = -1;
    p->target_bpw = target;
    p->predicted = NAN;
    for (int k = 0; k < ms->n; k++)
        if (ms->layers[k].n_entries > 0) p->params += ms->layers[k].out * ms->layers[k].in;
    p->budget_bits = (int64_t)floor(target * (double)p->params);
}

static void plan_set(mixed_plan *p, const measurement *ms, int k, int e) {
    const qsetting *s = &ms->layers[k].entries[e].s;
    p->choice[k] = e;
    p->layer_gp[k].bits = s->bits, p->layer_gp[k].group_size = s->group_size, p->layer_gp[k].sym = s->sym;
}

static void plan_totals(mixed_plan *p, const measurement *ms) {
    p->bits = 0;
    for (int k = 0; k < ms->n; k++)
        if (p->choice[k] >= 0) p->bits += ms->layers[k].entries[p->choice[k]].storage_bits;
    p->bpw = p->params ? (double)p->bits / (double)p->params : 0;
}

void mixed_plan_free(mixed_plan *p) {
    free(p->layer_gp);
    free(p->choice);
    memset(p, 0, sizeof *p);
}

int mixed_plan_measured(const measurement *ms, const gptq_params *base, double target_bpw, mixed_objective obj,
                        mixed_plan *p) {
    plan_init(p, ms, base, target_bpw);
    if (p->params == 0) {
        mixed_plan_free(p);
        return gptq_fail("no Linear of this model can be quantized into the checkpoint format");
    }
    int n = 0;
    alloc_layer *al = xcalloc((size_t)ms->n, sizeof(alloc_layer));
    int *idx = xmalloc(sizeof(int) * (size_t)ms->n), *choice = xmalloc(sizeof(int) * (size_t)ms->n);
    double *errs = xmalloc(sizeof(double) * (size_t)ms->n * MEASURE_MAX_MENU);
    int64_t *bits = xmalloc(sizeof(int64_t) * (size_t)ms->n * MEASURE_MAX_MENU);
    int rc = 0;
    for (int k = 0; k < ms->n && rc == 0; k++) {
        const measure_layer *L = &ms->layers[k];
        if (L->n_entries == 0) continue;
        if (!L->measured) {
            rc = gptq_fail("%s has not been measured", L->name);
            break;
        }
        const double snll = obj == MIXED_NLL ? measure_nll_sensitivity(L) : 0;
        if (!isfinite(snll)) {
            rc = gptq_fail("--alloc-objective nll: %s was measured without the NLL sensitivities (a measurement file from "
                           "before they were recorded); measure again into a new --measurement file",
                           L->name);
            break;
        }
        for (int e = 0; e < L->n_entries; e++) {
            double r = L->entries[e].rel_err;
            errs[(size_t)n * MEASURE_MAX_MENU + e] = obj == MIXED_KL       ? L->sensitivity * r * r
                                                     : obj == MIXED_NLL    ? snll * r * r
                                                     : obj == MIXED_KL_POW ? measure_predicted_kl(L, r)
                                                     : obj == MIXED_ERR_SQ  ? r * r
                                                                            : r;
            bits[(size_t)n * MEASURE_MAX_MENU + e] = L->entries[e].storage_bits;
        }
        al[n] = (alloc_layer){L->n_entries, errs + (size_t)n * MEASURE_MAX_MENU, bits + (size_t)n * MEASURE_MAX_MENU};
        idx[n++] = k;
    }
    if (rc == 0 && alloc_solve(al, n, p->budget_bits, choice, &p->st) != 0) {
        int64_t need = 0;
        for (int i = 0; i < n; i++) {
            int64_t lo = INT64_MAX;
            for (int e = 0; e < al[i].n; e++) lo = al[i].bits[e] < lo ? al[i].bits[e] : lo;
            need += lo;
        }
        rc = gptq_fail("--target-bpw %g is below the %.4f bpw of the smallest menu settings", target_bpw,
                       (double)need / (double)p->params);
    }
    if (rc == 0) {
        for (int i = 0; i < n; i++) plan_set(p, ms, idx[i], choice[i]);
        plan_totals(p, ms);
        p->predicted = p->st.err;
    }
    free(al), free(idx), free(choice), free(errs), free(bits);
    if (rc) mixed_plan_free(p);
    return rc;
}

/* The entry of layer L with setting (bits, group, sym), or -1. */
static int find_entry(const measure_layer *L, int bits, int group, int sym) {
    for (int e = 0; e < L->n_entries; e++)
        if (L->entries[e].s.bits == bits && L->entries[e].s.group_size == group && L->entries[e].s.sym == sym) return e;
    return -1;
}

int mixed_plan_llamacpp(const measurement *ms, const gptq_params *base, double target_bpw, mixed_plan *p) {
    plan_init(p, ms, base, target_bpw);
    if (p->params == 0) {
        mixed_plan_free(p);
        return gptq_fail("no Linear of this model can be quantized into the checkpoint format");
    }
    /* the menu's bit widths, ascending */
    int ladder[8], nl = 0;
    for (int i = 0; i < ms->n_menu; i++) {
        int b = ms->menu[i].bits, seen = 0;
        for (int j = 0; j < nl; j++) seen |= ladder[j] == b;
        if (!seen) ladder[nl++] = b;
    }
    for (int i = 0; i < nl; i++)
        for (int j = i + 1; j < nl; j++)
            if (ladder[j] < ladder[i]) {
                int t = ladder[i];
                ladder[i] = ladder[j], ladder[j] = t;
            }
    int *cur = xmalloc(sizeof(int) * (size_t)ms->n), *best = xmalloc(sizeof(int) * (size_t)ms->n);
    int64_t best_bits = -1, least_bits = INT64_MAX;
    int have = 0, least_menu = -1;
    for (int mi = 0; mi < ms->n_menu; mi++) {
        const qsetting *s = &ms->menu[mi];
        int li = 0;
        while (ladder[li] != s->bits) li++;
        int64_t total = 0;
        int ok = 1;
        for (int k = 0; k < ms->n && ok; k++) {
            const measure_layer *L = &ms->layers[k];
            cur[k] = -1;
            if (L->n_entries == 0) continue;
            int up = li + alloc_llamacpp_steps(L->layer, ms->n_layers, L->id, s->bits);
            if (up >= nl) up = nl - 1;
            /* the wanted width, else the next one up the ladder that this shape can take (then
             * down); the base group, else the per-row grid (a group that does not fit the width) */
            int e = -1;
            for (int d = 0; d < 2 * nl && e < 0; d++) {
                int t = d < nl ? up + d : up - (d - nl) - 1;
                if (t < 0 || t >= nl) continue;
                e = find_entry(L, ladder[t], s->group_size, s->sym);
                if (e < 0) e = find_entry(L, ladder[t], -1, s->sym);
            }
            if (e < 0) ok = 0;
            else cur[k] = e, total += L->entries[e].storage_bits;
        }
        if (!ok) continue;
        if (total < least_bits) least_bits = total, least_menu = mi;
        if (total <= p->budget_bits && total > best_bits) {
            best_bits = total;
            memcpy(best, cur, sizeof(int) * (size_t)ms->n);
            p->base = *s;
            have = 1;
        }
    }
    free(cur);
    if (!have) {
        const double least_bpw = least_menu < 0 ? 0 : (double)least_bits / (double)p->params; /* before p is freed */
        free(best);
        mixed_plan_free(p);
        if (least_menu < 0) return gptq_fail("no menu setting fits every quantizable Linear");
        return gptq_fail("--target-bpw %g is below the smallest llama.cpp-style plan (%.4f bpw)", target_bpw, least_bpw);
    }
    for (int k = 0; k < ms->n; k++)
        if (best[k] >= 0) plan_set(p, ms, k, best[k]);
    free(best);
    plan_totals(p, ms);
    double e = 0;
    int all = 1;
    for (int k = 0; k < ms->n; k++)
        if (p->choice[k] >= 0) {
            if (!ms->layers[k].measured) all = 0;
            else e += ms->layers[k].sensitivity * pow(ms->layers[k].entries[p->choice[k]].rel_err, 2);
        }
    p->predicted = all ? e : NAN;
    return 0;
}

double mixed_predicted_rel_err(const measurement *ms, int k, const gptq_params *gp) {
    if (!ms || k < 0 || k >= ms->n || !ms->layers[k].measured) return NAN;
    int e = find_entry(&ms->layers[k], gp->bits, gp->group_size, gp->sym);
    return e < 0 ? NAN : ms->layers[k].entries[e].rel_err;
}
