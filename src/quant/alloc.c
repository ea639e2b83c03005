#include "quant/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/llama.h"

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

/* DP over `cells` + 1 budget cells with per-option cell costs w (layers × max options,
 * row stride m): f_i(c) = least error of layers 0..i-1 within c cells.  Fills choice and
 * returns the optimum, or INFINITY if nothing fits. */
static double dp_run(const alloc_layer *L, int n, int m, const int64_t *w, int64_t cells, int *choice) {
    size_t C = (size_t)cells + 1;
    double *f = xmalloc(sizeof(double) * C), *g = xmalloc(sizeof(double) * C);
    unsigned char *pick = xmalloc((size_t)n * C);
    for (size_t c = 0; c < C; c++) f[c] = 0.0;
    for (int i = 0; i < n; i++) {
        unsigned char *pi = pick + (size_t)i * C;
        const int64_t *wi = w + (size_t)i * m;
#pragma omp parallel for schedule(static) if (C * (size_t)L[i].n > 1u << 20)
        for (size_t c = 0; c < C; c++) {
            double best = INFINITY;
            int bo = 0;
            for (int o = 0; o < L[i].n; o++) {
                if ((int64_t)c < wi[o]) continue;
                double v = f[c - (size_t)wi[o]] + L[i].err[o];
                if (v < best) best = v, bo = o;
            }
            g[c] = best;
            pi[c] = (unsigned char)bo;
        }
        double *t = f;
        f = g, g = t;
    }
    double opt = f[C - 1];
    if (isfinite(opt)) {
        size_t c = C - 1;
        for (int i = n - 1; i >= 0; i--) {
            int o = pick[(size_t)i * C + c];
            choice[i] = o;
            c -= (size_t)w[(size_t)i * m + o];
        }
    }
    free(f), free(g), free(pick);
    return opt;
}

static void totals(const alloc_layer *L, int n, const int *choice, double *err, int64_t *bits) {
    double e = 0;
    int64_t b = 0;
    for (int i = 0; i < n; i++) e += L[i].err[choice[i]], b += L[i].bits[choice[i]];
    *err = e, *bits = b;
}

int alloc_solve_ex(const alloc_layer *L, int n, int64_t budget, int64_t max_table, int *choice, alloc_stats *st) {
    memset(st, 0, sizeof *st);
    if (n <= 0) return gptq_fail("alloc: no layers to allocate");
    int m = 0;
    int64_t need = 0, top = 0;
    for (int i = 0; i < n; i++) {
        if (L[i].n < 1 || L[i].n > 255) return gptq_fail("alloc: layer %d has %d options (1..255 allowed)", i, L[i].n);
        if (L[i].n > m) m = L[i].n;
        int64_t lo = INT64_MAX, hi = 0;
        for (int o = 0; o < L[i].n; o++) {
            if (L[i].bits[o] < 0 || !(L[i].err[o] >= 0) || !isfinite(L[i].err[o]))
                return gptq_fail("alloc: layer %d option %d has bits %lld and error %g", i, o, (long long)L[i].bits[o],
                                 L[i].err[o]);
            if (L[i].bits[o] < lo) lo = L[i].bits[o];
            if (L[i].bits[o] > hi) hi = L[i].bits[o];
        }
        need += lo, top += hi;
    }
    if (need > budget)
        return gptq_fail("alloc: the budget of %lld bits is below the %lld bits of the smallest settings", (long long)budget,
                         (long long)need);
    /* extra bits above each layer's cheapest option */
    int64_t *extra = xmalloc(sizeof(int64_t) * (size_t)n * m);
    int64_t u = 0;
    for (int i = 0; i < n; i++) {
        int64_t lo = INT64_MAX;
        for (int o = 0; o < L[i].n; o++)
            if (L[i].bits[o] < lo) lo = L[i].bits[o];
        for (int o = 0; o < L[i].n; o++) {
            extra[(size_t)i * m + o] = L[i].bits[o] - lo;
            u = gcd64(u, extra[(size_t)i * m + o]);
        }
    }
    int64_t slack = (budget < top ? budget : top) - need; /* more budget than the dearest choice never helps */
    if (u == 0) u = 1;
    int64_t *w = xmalloc(sizeof(int64_t) * (size_t)n * m);
    int64_t cells = slack / u;
    int rc = 0;
    if ((cells + 1) * (int64_t)n <= max_table) {
        /* exact: every cost is a whole number of cells */
        for (size_t k = 0; k < (size_t)n * m; k++) w[k] = extra[k] / u;
        dp_run(L, n, m, w, cells, choice);
        st->exact = 1;
    } else {
        /* coarser unit: floor costs (relaxation) and ceiling costs (feasible) */
        int64_t per = max_table / n - 1;
        if (per < 1) per = 1;
        u = (slack + per - 1) / per;
        int64_t fcells = slack / u;
        int *cf = xmalloc(sizeof(int) * (size_t)n);
        for (size_t k = 0; k < (size_t)n * m; k++) w[k] = extra[k] / u;
        double lb = dp_run(L, n, m, w, fcells, cf);
        double e;
        int64_t b;
        totals(L, n, cf, &e, &b);
        if (b <= budget) {
            memcpy(choice, cf, sizeof(int) * (size_t)n);
            st->exact = 1;
        } else {
            for (size_t k = 0; k < (size_t)n * m; k++) w[k] = (extra[k] + u - 1) / u;
            dp_run(L, n, m, w, fcells, choice); /* the cheapest options always fit: cost 0 */
            st->exact = 0;
        }
        st->lower_bound = lb;
        free(cf);
        cells = fcells;
    }
    totals(L, n, choice, &st->err, &st->bits);
    if (st->exact) st->lower_bound = st->err;
    st->unit = u;
    st->cells = cells + 1;
    free(w), free(extra);
    return rc;
}

int alloc_solve(const alloc_layer *layers, int n, int64_t budget, int *choice, alloc_stats *st) {
    return alloc_solve_ex(layers, n, budget, (int64_t)1 << 26, choice, st);
}

/* llama.cpp's use_more_bits(i, n). */
static int use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

int alloc_llamacpp_steps(int layer, int n_layers, int lin, int base_bits) {
    switch (lin) {
    case LIN_V:
    case LIN_DOWN: return use_more_bits(layer, n_layers) ? 2 : 1;
    case LIN_O: return base_bits <= 3 ? 1 : 0;
    default: return 0;
    }
}
