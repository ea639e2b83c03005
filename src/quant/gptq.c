#include "quant/gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "quant/hessian.h"

#define GPTQ_MAX_RETRIES 3

gptq_params gptq_default_params(void) {
    gptq_params p = {0};
    p.bits = 4;
    p.group_size = 128;
    p.sym = 0;
    p.act_order = 0;
    p.static_groups = 0;
    p.v1_zero = 1;
    p.damp = 0.01f;
    p.block_size = 128;
    p.want_rel_err = 0;
    return p;
}

void gptq_result_free(gptq_result *res) {
    quant_layer_free(&res->q);
    free(res->perm);
    res->perm = NULL;
}

typedef struct {
    float d;
    int32_t i;
} diag_key;

/* Descending diagonal, ties by ascending column: a strict total order, so the sort is stable. */
static int diag_key_cmp(const void *pa, const void *pb) {
    const diag_key *a = pa, *b = pb;
    if (a->d > b->d) return -1;
    if (a->d < b->d) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

void gptq_column_order(const float *diag, int64_t n, int act_order, int32_t *perm) {
    if (!act_order) {
        for (int64_t j = 0; j < n; j++) perm[j] = (int32_t)j;
        return;
    }
    diag_key *keys = xmalloc(sizeof(diag_key) * (size_t)n);
    for (int64_t i = 0; i < n; i++) keys[i] = (diag_key){diag[i], (int32_t)i};
    qsort(keys, (size_t)n, sizeof(diag_key), diag_key_cmp);
    for (int64_t j = 0; j < n; j++) perm[j] = keys[j].i;
    free(keys);
}

static int all_finite(const float *x, int64_t n) {
    int ok = 1;
#pragma omp parallel for reduction(&& : ok) schedule(static) if (n > QUANT_PAR_MIN)
    for (int64_t k = 0; k < n; k++) ok = ok && isfinite(x[k]);
    return ok;
}

/* D (n, n) row-major double := J (H[perm][:, perm] with diag replaced by diag + lambda) J,
 * J the reversal: D[a][b] = Hp[n-1-a][n-1-b].  diag (n) is H's diagonal in original order
 * with dead entries already set to 1. */
static void build_reversed(double *D, const float *h, const float *diag, const int32_t *perm, int64_t n,
                           double lambda) {
#pragma omp parallel for schedule(static) if (n * n > QUANT_PAR_MIN)
    for (int64_t a = 0; a < n; a++) {
        int64_t pi = perm[n - 1 - a];
        const float *hr = h + pi * n;
        double *dr = D + a * n;
        for (int64_t b = 0; b < n; b++) dr[b] = (double)hr[perm[n - 1 - b]];
        dr[a] = (double)diag[pi] + lambda;
    }
}

/* The upper Cholesky factor U of (Hp + λI)⁻¹ into U (n, n) row-major fp32 (zeros below the
 * diagonal), retrying with more damping.  Returns 0, or -1 with an error. */
static int hinv_chol_upper(const float *h, const float *diag, const int32_t *perm, int64_t n, double mean_diag,
                           float damp, float *U, gptq_result *res) {
    double *D = xaligned_alloc(sizeof(double) * (size_t)(n * n));
    double d = damp;
    lapack_int info = 0;
    int attempt;
    for (attempt = 0; attempt <= GPTQ_MAX_RETRIES; attempt++) {
        if (attempt > 0) d = d == 0.0 ? 0.01 : d * 10.0;
        build_reversed(D, h, diag, perm, n, d * mean_diag);
        /* Column-major 'U' on a row-major buffer is the row-major lower factor: D = L Lᵀ. */
        info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)n, D, (lapack_int)n);
        if (info == 0) break;
        if (info < 0) {
            free(D);
            return gptq_fail("gptq: dpotrf rejected argument %d", (int)-info);
        }
    }
    if (info != 0) {
        free(D);
        return gptq_fail("gptq: Hessian (%lld x %lld) is not positive definite even with damping %g of its mean diagonal "
                         "(%d retries from %g)",
                         (long long)n, (long long)n, d, GPTQ_MAX_RETRIES, (double)damp);
    }
    info = LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'U', 'N', (lapack_int)n, D, (lapack_int)n); /* row-major L⁻¹ */
    if (info != 0) {
        free(D);
        return gptq_fail("gptq: Cholesky factor of the Hessian is singular (dtrtri info %d)", (int)info);
    }
    /* U[i][j] = L⁻¹[n-1-i][n-1-j] for i <= j. */
#pragma omp parallel for schedule(static) if (n * n > QUANT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float *ur = U + i * n;
        const double *lr = D + (n - 1 - i) * n;
        for (int64_t j = 0; j < i; j++) ur[j] = 0.0f;
        for (int64_t j = i; j < n; j++) ur[j] = (float)lr[n - 1 - j];
    }
    free(D);
    res->damp_retries = attempt;
    res->damp_used = d;
    res->lambda = d * mean_diag;
    return 0;
}

/* Everything the per-row work of a block reads or writes. */
typedef struct {
    const float *Wp;      /* (out, n) working weight, processing order, as of the block's start */
    const float *U;       /* (n, n) upper Cholesky factor of H⁻¹ */
    float *E;             /* (out, cnt) block values in, errors out */
    const int32_t *perm;  /* (n) */
    quant_layer *q;       /* outputs: codes, wq (original order), scales, zeros (groups, out) */
    const quant_grid *grid;
    const gptq_grid_hook *hook; /* custom grid, or NULL */
    int64_t out, n, gs;
    int grouped, is_static, maxq;
} block_ctx;

/* Rows [r0, r0 + nr) (nr <= GPTQ_ROW_TILE) of block [i1, i1 + cnt): quantize column by
 * column, propagating each error to the rest of the block's row; rowloss[r] += Σ (w − q)²/d².
 * Rows are independent: threads take tiles of rows, and a tile's rows are interleaved so
 * their serial chains (divide, round, divide, update) overlap.  Cloned for AVX-512/AVX2;
 * every operation is elementwise, so every clone gives the same bits (no FMA contraction
 * in ISO C mode). */
#define GPTQ_ROW_TILE 4
__attribute__((target_clones("avx512f", "avx2", "default"))) static void block_rows(const block_ctx *c, int64_t r0,
                                                                                    int64_t nr, int64_t i1, int64_t cnt,
                                                                                    double *rowloss) {
    const int64_t n = c->n, out = c->out, gs = c->gs;
    quant_layer *q = c->q;
    double l[GPTQ_ROW_TILE] = {0};
    float err[GPTQ_ROW_TILE];
    for (int64_t t = 0; t < nr; t++)
        memcpy(c->E + (r0 + t) * cnt, c->Wp + (r0 + t) * n + i1, sizeof(float) * (size_t)cnt);
    for (int64_t i = 0; i < cnt; i++) {
        const int64_t j = i1 + i, oc = c->perm[j];
        int64_t g = 0;
        if (c->hook) {
            /* the block was widened to whole groups: E holds their current values */
            if (!c->is_static && j % gs == 0)
                for (int64_t t = 0; t < nr; t++) c->hook->fit(c->hook->ctx, r0 + t, j / gs, c->E + (r0 + t) * cnt + i);
        } else if (c->is_static) {
            g = oc / gs;
        } else if (c->grouped) {
            g = j / gs;
            if (j % gs == 0) {
                /* the reference reads W here, which lacks this block's earlier updates */
                int64_t len = n - j < gs ? n - j : gs;
                for (int64_t t = 0; t < nr; t++)
                    quant_row_params(c->Wp + (r0 + t) * n + j, len, c->grid, &q->scales[g * out + r0 + t],
                                     &q->zeros[g * out + r0 + t]);
            }
        }
        const float d = c->U[j * n + j];
        for (int64_t t = 0; t < nr; t++) {
            const int64_t r = r0 + t;
            const float x = c->E[r * cnt + i];
            const float dq = c->hook ? c->hook->quant(c->hook->ctx, r, oc, x)
                                     : quant_one(x, q->scales[g * out + r], q->zeros[g * out + r], c->maxq, &q->codes[r * n + oc]);
            q->wq[r * n + oc] = dq;
            const float diff = x - dq;
            l[t] += (double)(diff * diff / (d * d));
            err[t] = diff / d;
        }
        const float *ur = c->U + j * n + i1;
        for (int64_t t = 0; t < nr; t++) {
            float *e = c->E + (r0 + t) * cnt;
            const float et = err[t];
#pragma omp simd
            for (int64_t k = i + 1; k < cnt; k++) e[k] -= et * ur[k];
            e[i] = et;
        }
    }
    for (int64_t t = 0; t < nr; t++) rowloss[r0 + t] += l[t];
}


/* Problems below this many flops (about 20 ms on one core) run on the calling thread alone:
 * OpenBLAS's OpenMP build takes its thread count from omp_get_max_threads(), and its
 * parallel dpotrf / small sgemm cost far more than they save there (on busy shared cores
 * every fork can cost a scheduler time slice: 20 ms instead of 0.3 ms for a 128² dpotrf). */
#define GPTQ_SERIAL_FLOPS 5e7

static int check_h(const float *h, int64_t in) {
    if (in <= 0) return gptq_fail("gptq: bad input width %lld", (long long)in);
    if (in > 0x7fffffff / 2) return gptq_fail("gptq: %lld input features is too many", (long long)in);
    if (!all_finite(h, in * in)) return gptq_fail("gptq: Hessian has non-finite values");
    return 0;
}

/* Steps 2, 4, 5, 6: dead inputs, processing order, damping, U. */
static int prepare_impl(const float *h, int64_t n, int act_order, float damp, gptq_hinv *hv) {
    memset(hv, 0, sizeof *hv);
    if (!(damp >= 0.0f) || !isfinite(damp)) return gptq_fail("gptq: bad damping %g", (double)damp);
    if (check_h(h, n)) return -1;
    hv->n = n;
    hv->act_order = act_order;
    hv->diag = xmalloc(sizeof(float) * (size_t)n);
    hv->dead = xmalloc((size_t)n);
    hv->perm = xmalloc(sizeof(int32_t) * (size_t)n);
    double mean_diag = 0.0;
    for (int64_t i = 0; i < n; i++) {
        hv->diag[i] = h[i * n + i];
        hv->dead[i] = hv->diag[i] == 0.0f;
        if (hv->dead[i]) {
            hv->diag[i] = 1.0f;
            hv->n_dead++;
        }
        mean_diag += hv->diag[i];
    }
    mean_diag /= (double)n;
    gptq_column_order(hv->diag, n, act_order, hv->perm);
    hv->U = xaligned_alloc(sizeof(float) * (size_t)(n * n));
    gptq_result tmp;
    memset(&tmp, 0, sizeof tmp);
    if (hinv_chol_upper(h, hv->diag, hv->perm, n, mean_diag, damp, hv->U, &tmp)) {
        gptq_hinv_free(hv);
        return -1;
    }
    hv->damp_retries = tmp.damp_retries;
    hv->damp_used = tmp.damp_used;
    hv->lambda = tmp.lambda;
    return 0;
}

int gptq_prepare(const float *h, int64_t in, int act_order, float damp, gptq_hinv *hv) {
    const double work = (double)in * (double)in * (double)in;
    const int saved = omp_get_max_threads();
    if (work < GPTQ_SERIAL_FLOPS) omp_set_num_threads(1);
    int rc = prepare_impl(h, in, act_order, damp, hv);
    if (work < GPTQ_SERIAL_FLOPS) omp_set_num_threads(saved);
    return rc;
}

void gptq_hinv_free(gptq_hinv *hv) {
    free(hv->perm);
    free(hv->dead);
    free(hv->diag);
    free(hv->U);
    memset(hv, 0, sizeof *hv);
}

static int quantize_prepared_impl(const float *w, const float *h, int64_t out, const gptq_hinv *hv, const gptq_params *p,
                                  gptq_result *res);

int gptq_quantize(const float *w, const float *h, int64_t out, int64_t in, const gptq_params *p, gptq_result *res) {
    memset(res, 0, sizeof *res);
    const double work = 2.0 * (double)out * (double)in * (double)in + (double)in * (double)in * (double)in;
    const int saved = omp_get_max_threads();
    if (work < GPTQ_SERIAL_FLOPS) omp_set_num_threads(1);
    gptq_hinv hv;
    int rc = prepare_impl(h, in, p->act_order, p->damp, &hv);
    if (rc == 0) {
        rc = quantize_prepared_impl(w, h, out, &hv, p, res);
        gptq_hinv_free(&hv);
    }
    if (work < GPTQ_SERIAL_FLOPS) omp_set_num_threads(saved);
    return rc;
}

int gptq_quantize_prepared(const float *w, const float *h, int64_t out, const gptq_hinv *hv, const gptq_params *p,
                           gptq_result *res) {
    if (p->act_order != hv->act_order) {
        memset(res, 0, sizeof *res);
        return gptq_fail("gptq: act-order %d does not match the prepared Hessian's %d", p->act_order, hv->act_order);
    }
    return quantize_prepared_impl(w, h, out, hv, p, res);
}

static int quantize_prepared_impl(const float *w, const float *h, int64_t out, const gptq_hinv *hv, const gptq_params *p,
                                  gptq_result *res) {
    memset(res, 0, sizeof *res);
    const int64_t n = hv->n, in = n;
    const gptq_grid_hook *hook = p->grid_hook;
    if (hook) {
        if (hook->group_size <= 0 || in % hook->group_size)
            return gptq_fail("gptq: %lld input features is not a multiple of the grid's group of %d", (long long)in,
                             hook->group_size);
        if (p->act_order && !p->static_groups)
            return gptq_fail("gptq: act-order with block-format grids needs static groups (the format has no g_idx)");
    } else if (quant_check_bits(p->bits)) {
        return gptq_fail_context("gptq");
    }
    if (out <= 0 || in <= 0) return gptq_fail("gptq: bad weight shape (%lld, %lld)", (long long)out, (long long)in);
    if (p->group_size == 0 || p->group_size < -1)
        return gptq_fail("gptq: bad group size %d (expected -1 or > 0)", p->group_size);
    if (p->block_size <= 0) return gptq_fail("gptq: bad block size %d", p->block_size);
    if (!all_finite(w, out * in)) return gptq_fail("gptq: weight has non-finite values");

    const quant_grid grid = {p->bits, p->sym, p->v1_zero, p->mse};
    const int maxq = hook ? 0 : quant_maxq(p->bits);
    const int grouped = hook || p->group_size > 0;
    const int64_t gs = hook ? hook->group_size : grouped ? p->group_size : n;
    const int is_static = grouped && p->static_groups;
    const unsigned char *dead = hv->dead;
    const int32_t *perm = hv->perm;
    const float *U = hv->U;
    quant_layer *q = &res->q;
    quant_layer_alloc(q, out, in, hook ? 8 : p->bits, hook ? hook->group_size : p->group_size, 1);
    res->perm = xmalloc(sizeof(int32_t) * (size_t)n);
    memcpy(res->perm, perm, sizeof(int32_t) * (size_t)n);
    res->energy = NAN;
    res->rel_err = NAN;
    res->dead = hv->n_dead;
    res->damp_retries = hv->damp_retries;
    res->damp_used = hv->damp_used;
    res->lambda = hv->lambda;

    /* 1. whole-row grid from the original W */
    if (!grouped && !hook) quant_find_params(w, out, n, 0, n, &grid, q->scales, q->zeros, 1);

    /* Working weight Wp (out, n): dead-zeroed, columns in processing order.
     * 3. static group grids from the dead-zeroed W in original order. */
    float *Wp = xaligned_alloc(sizeof(float) * (size_t)(out * n));
#pragma omp parallel if (out * n > QUANT_PAR_MIN)
    {
        float *row = is_static ? xmalloc(sizeof(float) * (size_t)n) : NULL;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < out; r++) {
            const float *wr = w + r * n;
            float *pr = Wp + r * n;
            for (int64_t j = 0; j < n; j++) pr[j] = dead[perm[j]] ? 0.0f : wr[perm[j]];
            if (is_static) {
                for (int64_t i = 0; i < n; i++) row[i] = dead[i] ? 0.0f : wr[i];
                for (int64_t g = 0; g < q->groups; g++) {
                    int64_t c0 = g * gs, c1 = c0 + gs < n ? c0 + gs : n;
                    if (hook) hook->fit(hook->ctx, r, g, row + c0);
                    else quant_row_params(row + c0, c1 - c0, &grid, &q->scales[g * out + r], &q->zeros[g * out + r]);
                }
            }
        }
        free(row);
    }

    /* 7. the column loop */
    int64_t B = p->block_size < n ? p->block_size : n;
    if (hook && !is_static) B = (B + gs - 1) / gs * gs; /* whole groups per lazy block (n is a multiple of gs) */
    float *E = xaligned_alloc(sizeof(float) * (size_t)(out * B)); /* (out, cnt): the block's row values, then errors */
    double *rowloss = xcalloc((size_t)out, sizeof(double));
    const block_ctx ctx = {Wp, U, E, perm, q, &grid, hook, out, n, gs, grouped, is_static, maxq};
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n, cnt = i2 - i1;
#pragma omp parallel for schedule(static) if (out * cnt * cnt > 32 * QUANT_PAR_MIN)
        for (int64_t r0 = 0; r0 < out; r0 += GPTQ_ROW_TILE)
            block_rows(&ctx, r0, out - r0 < GPTQ_ROW_TILE ? out - r0 : GPTQ_ROW_TILE, i1, cnt, rowloss);
        if (i2 < n) {
            /* W[:, i2:] -= Err (out, cnt) · U[i1:i2, i2:] (cnt, n - i2) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)(n - i2), (int)cnt, -1.0f, E, (int)cnt,
                        U + i1 * n + i2, (int)n, 1.0f, Wp + i2, (int)n);
        }
    }

    /* g_idx, loss, output error */
    for (int64_t j = 0; j < n; j++) {
        if (!grouped) q->g_idx[j] = 0;
        else if (is_static || !p->act_order) q->g_idx[j] = (int32_t)(j / gs);
        else q->g_idx[perm[j]] = (int32_t)(j / gs);
    }
    double loss = 0.0;
    for (int64_t r = 0; r < out; r++) loss += rowloss[r];
    res->loss = loss / 2.0;
    double dw2 = 0.0;
#pragma omp parallel for reduction(+ : dw2) schedule(static) if (out * n > QUANT_PAR_MIN)
    for (int64_t r = 0; r < out; r++) {
        double acc = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double dv = (double)(dead[i] ? 0.0f : w[r * n + i]) - (double)q->wq[r * n + i];
            acc += dv * dv;
        }
        dw2 += acc;
    }
    res->err_sq = 2.0 * res->loss - res->lambda * dw2;
    if (res->err_sq < 0.0) res->err_sq = 0.0;
    if (p->want_rel_err) {
        res->energy = hessian_quad(w, out, n, h);
        res->rel_err = res->energy > 0 ? sqrt(res->err_sq / res->energy) : (res->err_sq == 0 ? 0.0 : INFINITY);
    }

    free(rowloss);
    free(E);
    free(Wp);
    return 0;
}
