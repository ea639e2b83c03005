#include "quant/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "quant/hessian.h"
#include "quant/rtn.h"

/* The original weight of a Linear, put back after its block when the dequantized one is
 * not to be kept. */
typedef struct {
    const void *w;
    gptq_dtype dtype;
    void *owned;
    int active;
} saved_weight;

static void linear_name(char *buf, size_t n, int layer, llama_linear_id id) {
    if (layer < 0) snprintf(buf, n, "lm_head");
    else snprintf(buf, n, "model.layers.%d.%s", layer, llama_linear_name(id));
}

/* fp32 copy of a Linear's weight (out, in). */
static float *weight_f32(const linear *l) {
    float *w = xaligned_alloc(sizeof(float) * l->out * l->in);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < l->out; r++) linear_row_f32(l, r, w + r * l->in);
    return w;
}

/* Quantizes one Linear with Hessian h (NULL for RTN), installs the dequantized weight in
 * the model and packs it for the checkpoint when the format can hold it. */
static int quantize_linear(linear *l, const float *h, const quant_options *o, int k, quant_result *r, saved_weight *sv) {
    quant_layer_report *rep = &r->rows[k];
    gptq_packed *pk = &r->packed[k];
    const gptq_params *gpk = o->layer_gp ? &o->layer_gp[k] : &o->gp;
    double t0 = now_seconds();
    rep->out = l->out, rep->in = l->in;
    rep->loss = rep->rel_err = NAN;
    if (o->measure) {
        if (!o->measure->wants(o->measure->ctx, k)) return 0;
        if (o->measure->run(o->measure->ctx, k, l, h) != 0) return gptq_fail_context("%s", rep->name);
        rep->seconds = now_seconds() - t0;
        return 0;
    }
    rep->bits = gpk->bits, rep->group_size = gpk->group_size, rep->sym = gpk->sym;
    if (o->for_checkpoint && gptq_pack_check(l->out, l->in, gpk->bits) != 0) {
        const char *why = gptq_last_error();
        if (strncmp(why, "gptq pack: ", 11) == 0) why += 11;
        snprintf(rep->skip_reason, sizeof rep->skip_reason, "%s", why);
        return 0;
    }
    float *w = weight_f32(l);
    quant_layer q;
    memset(&q, 0, sizeof q);
    int rc;
    if (o->hook) {
        rc = o->hook->fn(o->hook->ctx, rep->name, w, h, l->out, l->in, &q.wq, rep);
    } else if (o->method == QMETHOD_GPTQ) {
        gptq_result res;
        gptq_params gp = *gpk;
        gp.want_rel_err = 1;
        rc = gptq_quantize(w, h, l->out, l->in, &gp, &res);
        if (rc == 0) {
            q = res.q;
            memset(&res.q, 0, sizeof res.q);
            rep->loss = res.loss;
            rep->rel_err = res.rel_err;
            rep->damp_retries = res.damp_retries;
            rep->dead = res.dead;
            if (res.damp_retries)
                gptq_warn("%s: Hessian not positive definite; damping raised to %g", rep->name, res.damp_used);
            gptq_result_free(&res);
        }
    } else {
        quant_grid g = {gpk->bits, gpk->sym, gpk->v1_zero, gpk->mse};
        rc = rtn_quantize(w, l->out, l->in, &g, gpk->group_size, &q);
    }
    if (rc != 0) {
        free(w);
        return gptq_fail_context("%s", rep->name);
    }
    double se = 0;
#pragma omp parallel for reduction(+ : se) schedule(static)
    for (int64_t i = 0; i < l->out * l->in; i++) se += (double)(w[i] - q.wq[i]) * (w[i] - q.wq[i]);
    rep->weight_rmse = sqrt(se / (double)(l->out * l->in));
    free(w);
    if (!o->hook) rep->bpw = gptq_bits_per_weight(l->out, l->in, gpk->bits, gpk->group_size, 1);
    if (!o->hook && gptq_pack_check(l->out, l->in, gpk->bits) == 0) {
        if (gptq_pack(&q, pk) != 0) {
            quant_layer_free(&q);
            return gptq_fail_context("%s", rep->name);
        }
    }
    /* install the dequantized weight, remembering the original */
    sv->w = l->w, sv->dtype = l->dtype, sv->owned = l->owned, sv->active = 1;
    l->owned = NULL;
    linear_set_f32(l, q.wq);
    q.wq = NULL;
    quant_layer_free(&q);
    rep->quantized = 1;
    rep->seconds = now_seconds() - t0;
    return 0;
}

/* Does Linear k0..k1 (inclusive) need its Hessian?  Always, except in a measurement that
 * already has them. */
static int wants_any(const quant_options *o, int k0, int k1) {
    if (!o->measure) return 1;
    for (int k = k0; k <= k1; k++)
        if (o->measure->wants(o->measure->ctx, k)) return 1;
    return 0;
}

static void finish_weight(linear *l, saved_weight *sv, int keep) {
    if (!sv->active) return;
    if (keep) {
        free(sv->owned);
    } else {
        free(l->owned);
        l->owned = sv->owned, l->w = sv->w, l->dtype = sv->dtype;
    }
    sv->active = 0;
}

/* Finalizes a Hessian and checks it is finite (NaN/Inf activations would poison GPTQ). */
static int finalize_hessian(hessian_acc *a, int layer, const char *what) {
    char where[96];
    if (layer >= 0) snprintf(where, sizeof where, "model.layers.%d.%s", layer, what);
    else snprintf(where, sizeof where, "%s", what);
    if (hessian_finalize(a) != 0) return gptq_fail_context("%s", where);
    for (int64_t i = 0; i < a->in; i++)
        if (!isfinite(a->h[i * a->in + i]))
            return gptq_fail("%s: calibration activations are not finite (NaN/Inf)", where);
    return 0;
}

/* NaN/Inf anywhere in a weight to be quantized is an error naming the layer, found before
 * any work is done. */
static int check_finite(const linear *l, const char *name) {
    int64_t bad = -1;
#pragma omp parallel
    {
        float *row = xmalloc(sizeof(float) * l->in);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < l->out; r++) {
            linear_row_f32(l, r, row);
            for (int64_t i = 0; i < l->in; i++)
                if (!isfinite(row[i])) {
#pragma omp critical
                    if (bad < 0 || r * l->in + i < bad) bad = r * l->in + i;
                    break;
                }
        }
        free(row);
    }
    if (bad >= 0)
        return gptq_fail("%s: weight [%lld, %lld] is not finite (NaN/Inf)", name, (long long)(bad / l->in),
                         (long long)(bad % l->in));
    return 0;
}

/* One warning for all the layers the checkpoint format could not hold. */
static void warn_kept_in_float(const quant_result *r) {
    int n = 0, first = -1;
    for (int k = 0; k < r->n_rows; k++)
        if (r->rows[k].skip_reason[0]) {
            if (first < 0) first = k;
            n++;
        }
    if (n)
        gptq_warn("%d layer%s kept in float (the GPTQ format cannot pack them), e.g. %s: %s", n, n == 1 ? "" : "s",
                  r->rows[first].name, r->rows[first].skip_reason);
}

int quantize_model(llama_model *m, const calib_set *calib, const quant_options *o, quant_result *r) {
    const hf_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    double t_start = now_seconds();
    if (quant_check_bits(o->gp.bits) != 0) return -1;
    if (o->gp.group_size == 0 || o->gp.group_size < -1) return gptq_fail("group size must be -1 or positive, got %d", o->gp.group_size);
    if (o->quantize_lm_head && c->tie_embeddings)
        return gptq_fail("--quantize-lm-head: this model ties lm_head to the embeddings; quantizing it is not supported");
    if (o->method == QMETHOD_GPTQ && (!calib || calib->n < 1)) return gptq_fail("GPTQ needs calibration data");
    if (o->measure && o->method != QMETHOD_GPTQ) return gptq_fail("a measurement needs the GPTQ method");
    if (o->layer_gp)
        for (int k = 0; k < c->n_layers * LIN_COUNT + 1; k++) {
            if (quant_check_bits(o->layer_gp[k].bits) != 0) return -1;
            if (o->layer_gp[k].group_size == 0 || o->layer_gp[k].group_size < -1)
                return gptq_fail("group size must be -1 or positive, got %d", o->layer_gp[k].group_size);
        }

    int n_lin = c->n_layers * LIN_COUNT + 1;
    quant_result_begin(m, r);
    saved_weight *saved = xcalloc(n_lin, sizeof(saved_weight));
    quant_layer_report *head_rep = &r->rows[n_lin - 1];

    int rc = 0;
    for (int k = 0; k < n_lin - 1 && rc == 0; k++) rc = check_finite(&m->layers[k / LIN_COUNT].lin[k % LIN_COUNT], r->rows[k].name);
    if (rc == 0 && o->quantize_lm_head) rc = check_finite(&m->lm_head, head_rep->name);
    if (rc != 0) {
        free(saved);
        quant_result_free(r);
        return -1;
    }
    progress pg;
    if (o->method == QMETHOD_RTN) {
        progress_start(&pg, "rtn: layer", c->n_layers);
        for (int l = 0; l < c->n_layers && rc == 0; l++) {
            for (int j = 0; j < LIN_COUNT && rc == 0; j++) {
                int k = l * LIN_COUNT + j;
                linear *lin = &m->layers[l].lin[j];
                rc = quantize_linear(lin, NULL, o, k, r, &saved[k]);
                finish_weight(lin, &saved[k], o->keep_dequantized);
                /* done with its file pages: the resident set stays about one layer */
                if (!lin->owned) st_release(&m->st, lin->w, (size_t)lin->out * lin->in * dtype_size(lin->dtype));
            }
            progress_update(&pg, l + 1);
        }
        if (rc == 0 && o->quantize_lm_head) {
            rc = quantize_linear(&m->lm_head, NULL, o, n_lin - 1, r, &saved[n_lin - 1]);
            finish_weight(&m->lm_head, &saved[n_lin - 1], o->keep_dequantized);
        }
        progress_end(&pg);
        goto done;
    }

    /* ---- GPTQ: calibration activations through the blocks ---- */
    int N = calib->n, S = calib->seqlen, dim = c->dim, hid = c->hidden_dim;
    size_t qd = (size_t)c->n_heads * c->head_dim, wa = qd > (size_t)dim ? qd : (size_t)dim;
    size_t rows = (size_t)N * S;
    float *X = xaligned_alloc(sizeof(float) * rows * dim); /* block inputs, then outputs */
    float *A = xaligned_alloc(sizeof(float) * rows * wa);  /* attention outputs, then X + o(A) */
    llama_state *s = llama_state_new_ex(m, S, S, 1);
    int first = 0; /* blocks already done by an interrupted run (restored with X) */
    if (o->hooks && o->hooks->restore && (first = o->hooks->restore(o->hooks->ctx, X, rows, dim, r)) < 0) {
        rc = -1;
        goto gptq_done;
    }
    for (int w = 0; w < N && first == 0; w++) {
        const int *ids = calib->ids + (size_t)w * S;
        for (int t = 0; t < S; t++)
            if (ids[t] < 0 || ids[t] >= c->vocab_size) {
                rc = gptq_fail("calibration token id %d is outside the vocabulary (%d)", ids[t], c->vocab_size);
                goto gptq_done;
            }
        llama_embed(m, ids, S, X + (size_t)w * S * dim);
    }
    progress_start(&pg, "gptq: block", c->n_layers);
    for (int l = first; l < c->n_layers && rc == 0; l++) {
        llama_layer *L = &m->layers[l];
        const int k0 = l * LIN_COUNT;
        saved_weight *sv = &saved[k0];
        hessian_acc h;

        /* 1. q, k, v from rmsnorm(X) */
        if (wants_any(o, k0 + LIN_Q, k0 + LIN_V)) {
            hessian_init(&h, dim);
            for (int w = 0; w < N; w++) {
                llama_rmsnorm(s->xn, X + (size_t)w * S * dim, L->attn_norm, S, dim, c->norm_eps);
                hessian_add(&h, s->xn, S, 1);
            }
            rc = finalize_hessian(&h, l, "self_attn.q_proj input");
            for (int j = LIN_Q; j <= LIN_V && rc == 0; j++) rc = quantize_linear(&L->lin[j], h.h, o, k0 + j, r, &sv[j]);
            hessian_free(&h);
            if (rc) break;
        }

        /* 2. o from the attention outputs */
        int need = wants_any(o, k0 + LIN_O, k0 + LIN_O);
        hessian_init(&h, need ? (int64_t)qd : 1);
        for (int w = 0; w < N; w++) {
            float *aw = A + (size_t)w * S * wa;
            llama_rmsnorm(s->xn, X + (size_t)w * S * dim, L->attn_norm, S, dim, c->norm_eps);
            llama_attention(m, s, l, s->xn, S, 0, s->att_out);
            for (int t = 0; t < S; t++) memcpy(aw + (size_t)t * wa, s->att_out + (size_t)t * qd, sizeof(float) * qd);
            if (need) hessian_add(&h, s->att_out, S, 1);
        }
        if (need) {
            rc = finalize_hessian(&h, l, "self_attn.o_proj input");
            if (rc == 0) rc = quantize_linear(&L->lin[LIN_O], h.h, o, k0 + LIN_O, r, &sv[LIN_O]);
        }
        hessian_free(&h);
        if (rc) break;

        /* 3. gate, up from rmsnorm(X + o(A)); the residual sum replaces A */
        need = wants_any(o, k0 + LIN_GATE, k0 + LIN_UP);
        hessian_init(&h, need ? dim : 1);
        for (int w = 0; w < N; w++) {
            float *aw = A + (size_t)w * S * wa;
            const float *xw = X + (size_t)w * S * dim;
            for (int t = 0; t < S; t++) memcpy(s->att_out + (size_t)t * qd, aw + (size_t)t * wa, sizeof(float) * qd);
            linear_forward(&L->lin[LIN_O], s->out, s->att_out, S);
            for (int t = 0; t < S; t++)
                for (int i = 0; i < dim; i++) aw[(size_t)t * wa + i] = xw[(size_t)t * dim + i] + s->out[(size_t)t * dim + i];
            for (int t = 0; t < S; t++) memcpy(s->x + (size_t)t * dim, aw + (size_t)t * wa, sizeof(float) * dim);
            if (need) {
                llama_rmsnorm(s->xn, s->x, L->ffn_norm, S, dim, c->norm_eps);
                hessian_add(&h, s->xn, S, 1);
            }
        }
        if (need) {
            rc = finalize_hessian(&h, l, "mlp.gate_proj input");
            for (int j = LIN_GATE; j <= LIN_UP && rc == 0; j++) rc = quantize_linear(&L->lin[j], h.h, o, k0 + j, r, &sv[j]);
        }
        hessian_free(&h);
        if (rc) break;

        /* 4. down from the MLP activation; 5. the block output */
        need = wants_any(o, k0 + LIN_DOWN, k0 + LIN_DOWN);
        hessian_init(&h, need ? hid : 1);
        for (int pass = need ? 0 : 1; pass < 2 && rc == 0; pass++) {
            for (int w = 0; w < N; w++) {
                float *aw = A + (size_t)w * S * wa;
                for (int t = 0; t < S; t++) memcpy(s->x + (size_t)t * dim, aw + (size_t)t * wa, sizeof(float) * dim);
                llama_rmsnorm(s->xn, s->x, L->ffn_norm, S, dim, c->norm_eps);
                llama_mlp_act(m, s, l, s->xn, S, s->hb);
                if (pass == 0) {
                    hessian_add(&h, s->hb, S, 1);
                    continue;
                }
                linear_forward(&L->lin[LIN_DOWN], s->out, s->hb, S);
                float *xw = X + (size_t)w * S * dim;
                for (size_t i = 0; i < (size_t)S * dim; i++) xw[i] = s->x[i] + s->out[i];
            }
            if (pass == 0) {
                rc = finalize_hessian(&h, l, "mlp.down_proj input");
                if (rc == 0) rc = quantize_linear(&L->lin[LIN_DOWN], h.h, o, k0 + LIN_DOWN, r, &sv[LIN_DOWN]);
                hessian_free(&h);
            }
        }
        hessian_free(&h); /* the placeholder when down_proj needed no Hessian (idempotent) */
        for (int j = 0; j < LIN_COUNT; j++) {
            finish_weight(&L->lin[j], &sv[j], o->keep_dequantized);
            /* done with this block's file pages: keep the resident set to about one block */
            if (!L->lin[j].owned) st_release(&m->st, L->lin[j].w, (size_t)L->lin[j].out * L->lin[j].in * dtype_size(L->lin[j].dtype));
        }
        progress_update(&pg, l + 1);
        if (o->hooks && o->hooks->block_done) rc = o->hooks->block_done(o->hooks->ctx, l + 1, X, rows, dim, r);
    }
    progress_end(&pg);

    /* lm_head from the final norm of the last block's outputs */
    if (rc == 0 && o->quantize_lm_head && wants_any(o, n_lin - 1, n_lin - 1)) {
        hessian_acc h;
        hessian_init(&h, dim);
        for (int w = 0; w < N; w++) {
            llama_rmsnorm(s->xn, X + (size_t)w * S * dim, m->final_norm, S, dim, c->norm_eps);
            hessian_add(&h, s->xn, S, 1);
        }
        rc = finalize_hessian(&h, -1, "lm_head input");
        if (rc == 0) rc = quantize_linear(&m->lm_head, h.h, o, n_lin - 1, r, &saved[n_lin - 1]);
        hessian_free(&h);
    }
gptq_done:
    llama_state_free(s);
    free(A);
    free(X);

done:
    for (int k = 0; k < n_lin; k++) {
        if (k < n_lin - 1) finish_weight(&m->layers[k / LIN_COUNT].lin[k % LIN_COUNT], &saved[k], o->keep_dequantized && rc == 0);
        else finish_weight(&m->lm_head, &saved[k], o->keep_dequantized && rc == 0);
    }
    free(saved);
    if (rc != 0) {
        quant_result_free(r);
        return -1;
    }
    quant_result_end(r, t_start);
    return 0;
}

void quant_result_begin(const llama_model *m, quant_result *r) {
    const int n_lin = m->cfg.n_layers * LIN_COUNT + 1;
    memset(r, 0, sizeof *r);
    r->n_rows = n_lin;
    r->rows = xcalloc(n_lin, sizeof(quant_layer_report));
    for (int k = 0; k < n_lin; k++) r->rows[k].predicted_rel_err = NAN;
    r->packed = xcalloc(n_lin, sizeof(gptq_packed));
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++) {
            quant_layer_report *rep = &r->rows[l * LIN_COUNT + j];
            rep->layer = l, rep->id = (llama_linear_id)j;
            linear_name(rep->name, sizeof rep->name, l, (llama_linear_id)j);
        }
    quant_layer_report *head_rep = &r->rows[n_lin - 1];
    head_rep->layer = -1;
    linear_name(head_rep->name, sizeof head_rep->name, -1, 0);
}

void quant_result_end(quant_result *r, double t_start) {
    double bits = 0;
    for (int k = 0; k < r->n_rows; k++)
        if (r->rows[k].quantized) {
            double n = (double)r->rows[k].out * r->rows[k].in;
            bits += r->rows[k].bpw * n;
            r->quantized_params += (int64_t)n;
        }
    r->bpw = r->quantized_params ? bits / r->quantized_params : 0;
    warn_kept_in_float(r);
    r->seconds = now_seconds() - t_start;
}

void quant_result_free(quant_result *r) {
    if (r->packed)
        for (int k = 0; k < r->n_rows; k++) gptq_packed_free(&r->packed[k]);
    free(r->packed);
    free(r->rows);
    memset(r, 0, sizeof *r);
}
