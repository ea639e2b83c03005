/* The bit allocator against brute force on small random instances: the exact DP must
 * find the optimum; the coarse-unit fallback must stay feasible, never claim optimality
 * it does not have, and bound the optimum from below.  Plus the llama.cpp rule. */
#include <stdint.h>

#include "check.h"
#include "core/error.h"
#include "model/llama.h"
#include "quant/alloc.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static double unif(void) { return (double)(next() >> 11) / 9007199254740992.0; }

#define MAXL 7
#define MAXO 5

/* Least Σ err over all choices with Σ bits <= budget (INFINITY if none). */
static double brute(const alloc_layer *L, int n, int64_t budget) {
    int c[MAXL] = {0};
    double best = INFINITY;
    for (;;) {
        double e = 0;
        int64_t b = 0;
        for (int i = 0; i < n; i++) e += L[i].err[c[i]], b += L[i].bits[c[i]];
        if (b <= budget && e < best) best = e;
        int i = 0;
        while (i < n && ++c[i] == L[i].n) c[i++] = 0;
        if (i == n) break;
    }
    return best;
}

int main(void) {
    double err[MAXL][MAXO];
    int64_t bits[MAXL][MAXO];
    alloc_layer L[MAXL];
    int choice[MAXL];
    int n_exact_fallback = 0, n_inexact = 0;
    for (int trial = 0; trial < 3000; trial++) {
        int n = 1 + (int)(next() % MAXL);
        /* bit costs: small integers, or large ones sharing a common factor with offsets */
        int64_t scale = trial % 3 == 0 ? 1 : trial % 3 == 1 ? 512 : 1 + (int64_t)(next() % 200);
        for (int i = 0; i < n; i++) {
            L[i].n = 1 + (int)(next() % MAXO);
            int64_t base = (int64_t)(next() % 1000) * scale;
            for (int o = 0; o < L[i].n; o++) {
                bits[i][o] = base + (int64_t)(next() % 40) * scale + (trial % 3 == 2 ? (int64_t)(next() % 7) : 0);
                err[i][o] = trial % 5 == 0 ? (double)(next() % 4) : unif(); /* integer errors make ties */
            }
            L[i].err = err[i], L[i].bits = bits[i];
        }
        int64_t lo = 0, hi = 0;
        for (int i = 0; i < n; i++) {
            int64_t a = INT64_MAX, b = 0;
            for (int o = 0; o < L[i].n; o++) a = bits[i][o] < a ? bits[i][o] : a, b = bits[i][o] > b ? bits[i][o] : b;
            lo += a, hi += b;
        }
        int64_t budget = lo + (int64_t)(unif() * (double)(hi - lo + 10 * scale));
        double opt = brute(L, n, budget);
        alloc_stats st;
        int rc = alloc_solve(L, n, budget, choice, &st);
        CHECK(rc == 0, "trial %d: %s", trial, gptq_last_error());
        if (rc) continue;
        double e = 0;
        int64_t b = 0;
        for (int i = 0; i < n; i++) {
            CHECK(choice[i] >= 0 && choice[i] < L[i].n, "trial %d: choice %d out of range", trial, choice[i]);
            e += err[i][choice[i]], b += bits[i][choice[i]];
        }
        CHECK(b <= budget, "trial %d: %lld bits over the budget %lld", trial, (long long)b, (long long)budget);
        CHECK(st.exact, "trial %d: small instance not solved exactly", trial);
        CHECK(fabs(e - opt) <= 1e-12 * (1 + opt), "trial %d: error %.17g, optimum %.17g", trial, e, opt);
        CHECK(st.bits == b && fabs(st.err - e) <= 1e-12 * (1 + e), "trial %d: stats disagree", trial);

        /* the coarse fallback: a table far too small for the exact unit */
        rc = alloc_solve_ex(L, n, budget, 4 * n, choice, &st);
        CHECK(rc == 0, "trial %d (coarse): %s", trial, gptq_last_error());
        if (rc) continue;
        e = 0, b = 0;
        for (int i = 0; i < n; i++) e += err[i][choice[i]], b += bits[i][choice[i]];
        CHECK(b <= budget, "trial %d (coarse): over budget", trial);
        CHECK(e >= opt - 1e-12 * (1 + opt), "trial %d (coarse): below the optimum?", trial);
        CHECK(st.lower_bound <= opt + 1e-12 * (1 + opt), "trial %d (coarse): lower bound %.9g above optimum %.9g", trial,
              st.lower_bound, opt);
        if (st.exact) {
            CHECK(fabs(e - opt) <= 1e-12 * (1 + opt), "trial %d (coarse): claims exact, %.9g vs %.9g", trial, e, opt);
            n_exact_fallback++;
        } else {
            n_inexact++;
        }
    }
    CHECK(n_exact_fallback > 0 && n_inexact > 0, "the coarse path should meet both outcomes (%d proven, %d not)",
          n_exact_fallback, n_inexact);

    /* infeasible budget: a clear error */
    int64_t b1[2] = {100, 200};
    double e1[2] = {1, 0};
    alloc_layer one = {2, e1, b1};
    alloc_stats st;
    CHECK(alloc_solve(&one, 1, 99, choice, &st) == -1 && strstr(gptq_last_error(), "below"), "infeasible: %s",
          gptq_last_error());
    CHECK(alloc_solve(&one, 1, 199, choice, &st) == 0 && choice[0] == 0, "budget 199 -> option 0");
    CHECK(alloc_solve(&one, 1, 200, choice, &st) == 0 && choice[0] == 1, "budget 200 -> option 1");

    /* llama.cpp's use_more_bits over 32 layers: 0-3, 28-31 and every third from 6 */
    int more[32] = {0};
    for (int i = 0; i < 32; i++) more[i] = alloc_llamacpp_steps(i, 32, LIN_V, 4) == 2;
    int expect_more[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    int cnt = 0;
    for (int i = 0; i < 32; i++) cnt += more[i];
    CHECK(cnt == 16, "use_more_bits count %d", cnt);
    for (size_t k = 0; k < sizeof expect_more / sizeof *expect_more; k++) CHECK(more[expect_more[k]], "layer %d", expect_more[k]);
    CHECK(alloc_llamacpp_steps(4, 32, LIN_DOWN, 4) == 1, "down: one step elsewhere");
    CHECK(alloc_llamacpp_steps(0, 32, LIN_Q, 2) == 0 && alloc_llamacpp_steps(0, 32, LIN_O, 2) == 1 &&
              alloc_llamacpp_steps(0, 32, LIN_O, 4) == 0,
          "q never, o only at low bits");
    return check_done();
}
