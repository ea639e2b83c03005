/* quantize_model_cuda (quant/pipeline_cuda.h): the GPTQ pipeline of quant/pipeline.c with
 * the calibration forward pass, the Hessians and GPTQ itself on the GPU. */
#include "quant/pipeline_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "kernels/cuda/cuq.h"
#include "quant/cuda/gptq_cuda.h"
#include "quant/cuda/gptq_kernels.h"

#define CHUNK_ROWS 8192 /* calibration rows per forward chunk (whole windows, at least one) */

typedef struct {
    gptq_cuda g;
    llama_model *m;
    const quant_options *o;
    quant_result *r;
    int N, S, dim, hid, qd, kvd, nh, nkv, hd, cw; /* windows, seqlen, shapes, windows per chunk */
    size_t rows;                                /* N·S */
    /* "act" buffers hold GEMM operands: fp16, or fp32 with o->gpu_fp32 (f32, es bytes, type at) */
    int f32;
    size_t es;
    cudaDataType at;
    float *X;            /* (rows, dim) block inputs, then outputs */
    void *A16;           /* (rows, qd) act: attention outputs */
    void *in16;          /* (cw·S, max(dim, qd, hid)) act: normed inputs / MLP activations */
    float *y1, *y2, *y3; /* (cw·S, max(qd, hid)) q / gate, k / up, v */
    void *q16, *k16, *v16; /* (S, qd) act: one window's roped q, k and v (kv heads repeated) */
    float *scores;       /* (nh, S, S) */
    void *P16;           /* (nh, S, S) act */
    float *H;            /* (hmax, hmax) the Hessian being accumulated */
    int64_t hn;          /* its width */
    void *W16[LIN_COUNT]; /* (out, in) act: the block's weights for the forward pass */
    float *bias[LIN_COUNT];   /* (out) or NULL */
    float *norm1, *norm2, *inv_freq; /* (dim), (dim), (hd/2) */
    float *dw, *dwq;     /* (max out·in) fp32 weight, dequantized weight */
    void *raw;           /* (max out·in·4 bytes) the file's weight */
} gpu_run;

static void note_mem(gpu_run *u) { gptq_cuda_note_mem(&u->g); }

/* Element `i` of an act buffer. */
static void *at(const gpu_run *u, void *p, size_t i) { return (char *)p + i * u->es; }

/* act dst (n) from fp32 src. */
static int to_act(gpu_run *u, void *dst, const float *src, int64_t n) {
    if (u->f32) return cu_check(cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n, cudaMemcpyDeviceToDevice, u->g.stream), "copy");
    return gq_f32_to_f16(dst, src, n, u->g.stream);
}

static int dalloc(void *pp, size_t bytes, const char *what) {
    void **p = (void **)pp;
    *p = NULL;
    if (cudaMalloc(p, bytes ? bytes : 16) != cudaSuccess) {
        cudaGetLastError();
        return gptq_fail("CUDA: out of GPU memory allocating %s (%.1f MiB)", what, (double)bytes / 1048576.0);
    }
    return 0;
}

static int upload(void *dst, const void *src, size_t bytes, gpu_run *u) {
    return cu_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, u->g.stream), "upload");
}

/* y (R, out) (=|+=) x16 (R, in) · W16ᵀ, act operands, fp32 accumulation and output. */
static int gemm_act(gpu_run *u, const void *w16, int64_t out, int64_t in, const void *x16, int64_t R, float *y,
                    float beta) {
    const float one = 1.0f;
    return cublas_check(cublasGemmEx(u->g.blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)R, (int)in, &one, w16, u->at,
                                     (int)in, x16, u->at, (int)in, &beta, y, CUDA_R_32F, (int)out, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT),
                        "calibration GEMM");
}

/* y (R, out) (+)= x16 · Wᵀ (+ bias) of Linear j of the current block. */
static int lin_fwd(gpu_run *u, const llama_layer *L, int j, const void *x16, int64_t R, float *y, float beta) {
    const linear *l = &L->lin[j];
    if (gemm_act(u, u->W16[j], l->out, l->in, x16, R, y, beta)) return -1;
    if (u->bias[j] && gq_add_bias(y, u->bias[j], R, l->out, u->g.stream)) return -1;
    return 0;
}

static int hess_begin(gpu_run *u, int64_t n) {
    u->hn = n;
    return cu_check(cudaMemsetAsync(u->H, 0, sizeof(float) * (size_t)(n * n), u->g.stream), "sync");
}

/* H += x16ᵀ x16 for x16 (R, hn). */
static int hess_add(gpu_run *u, const void *x16, int64_t R) {
    const float one = 1.0f;
    const int n = (int)u->hn;
    return cublas_check(cublasGemmEx(u->g.blas, CUBLAS_OP_N, CUBLAS_OP_T, n, n, (int)R, &one, x16, u->at, n, x16, u->at, n,
                                     &one, u->H, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                        "Hessian GEMM");
}

/* H = 2/windows · Σ, then its GPTQ preparation. */
static int hess_prepare(gpu_run *u, int layer, const char *what, gptq_cuda_hinv *hv) {
    char where[96];
    if (layer >= 0) snprintf(where, sizeof where, "model.layers.%d.%s", layer, what);
    else snprintf(where, sizeof where, "%s", what);
    if (gq_hessian_finalize(u->H, u->hn, (float)(2.0 / (double)u->N), u->g.stream)) return -1;
    int rc = gptq_cuda_prepare(&u->g, u->H, u->hn, u->o->gp.act_order, u->o->gp.damp, where, hv);
    note_mem(u);
    return rc;
}

/* The fp32 weight of l into u->dw (from the file's dtype). */
static int load_weight(gpu_run *u, const linear *l) {
    const size_t n = (size_t)(l->out * l->in);
    if (l->qk || (l->dtype != DT_F32 && l->dtype != DT_F16 && l->dtype != DT_BF16))
        return gptq_fail("the GPU path needs dense F32/F16/BF16 weights");
    if (upload(u->raw, l->w, n * dtype_size(l->dtype), u)) return -1;
    return gq_to_f32(u->dw, u->raw, (int)l->dtype, (int64_t)n, u->g.stream);
}

/* Quantizes Linear k (weight l) with the prepared Hessian; its fp16 forward weight goes to
 * w16 (NULL: none needed).  Mirrors pipeline.c's quantize_linear. */
static int quantize_linear_gpu(gpu_run *u, linear *l, const gptq_cuda_hinv *hv, int k, void *w16) {
    quant_layer_report *rep = &u->r->rows[k];
    const gptq_params *gpk = &u->o->gp;
    double t0 = now_seconds();
    rep->out = l->out, rep->in = l->in;
    rep->loss = rep->rel_err = NAN;
    rep->bits = gpk->bits, rep->group_size = gpk->group_size, rep->sym = gpk->sym;
    if (load_weight(u, l)) return gptq_fail_context("%s", rep->name);
    const int64_t n = l->out * l->in;
    if (u->o->for_checkpoint && gptq_pack_check(l->out, l->in, gpk->bits) != 0) {
        const char *why = gptq_last_error();
        if (strncmp(why, "gptq pack: ", 11) == 0) why += 11;
        snprintf(rep->skip_reason, sizeof rep->skip_reason, "%s", why);
        return w16 ? to_act(u, w16, u->dw, n) : 0;
    }
    gptq_params gp = *gpk;
    gp.want_rel_err = 1;
    gptq_result res;
    double wse = 0;
    if (gptq_cuda_quantize(&u->g, u->dw, u->H, l->out, hv, &gp, u->dwq, u->o->keep_dequantized, &res, &wse) != 0)
        return gptq_fail_context("%s", rep->name);
    note_mem(u);
    rep->loss = res.loss;
    rep->rel_err = res.rel_err;
    rep->damp_retries = res.damp_retries;
    rep->dead = res.dead;
    if (res.damp_retries) gptq_warn("%s: Hessian not positive definite; damping raised to %g", rep->name, res.damp_used);
    rep->weight_rmse = sqrt(wse / (double)n);
    rep->bpw = gptq_bits_per_weight(l->out, l->in, gpk->bits, gpk->group_size, 1);
    if (gptq_pack_check(l->out, l->in, gpk->bits) == 0 && gptq_pack(&res.q, &u->r->packed[k]) != 0) {
        gptq_result_free(&res);
        return gptq_fail_context("%s", rep->name);
    }
    if (u->o->keep_dequantized) {
        free(l->owned);
        l->owned = NULL;
        linear_set_f32(l, res.q.wq);
        res.q.wq = NULL;
    }
    gptq_result_free(&res);
    if (w16 && to_act(u, w16, u->dwq, n)) return -1;
    rep->quantized = 1;
    rep->seconds = now_seconds() - t0;
    return 0;
}

/* Attention of windows [w0, w0 + nw) from the q/k/v projections in y1/y2/y3 into A16. */
static int attention(gpu_run *u, int w0, int nw) {
    const int S = u->S, nh = u->nh, hd = u->hd, qd = u->qd;
    const float scale = 1.0f / sqrtf((float)hd), zero = 0.0f, one = 1.0f;
    for (int w = 0; w < nw; w++) {
        const size_t r0 = (size_t)w * S;
        if (gq_rope_expand(u->y1 + r0 * qd, u->y2 + r0 * u->kvd, u->y3 + r0 * u->kvd, u->inv_freq, u->q16, u->k16, u->v16,
                           u->f32, S, nh, u->nkv, hd, u->g.stream))
            return -1;
        /* scores[h] (S_q, S_k) = q_h · k_hᵀ / sqrt(hd): column-major (S_k, S_q) = K_h Q_hᵀ */
        if (cublas_check(cublasGemmStridedBatchedEx(u->g.blas, CUBLAS_OP_T, CUBLAS_OP_N, S, S, hd, &scale, u->k16, u->at,
                                                    qd, hd, u->q16, u->at, qd, hd, &zero, u->scores, CUDA_R_32F, S,
                                                    (long long)S * S, nh, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "attention scores"))
            return -1;
        if (gq_causal_softmax(u->P16, u->f32, u->scores, nh, S, u->g.stream)) return -1;
        /* out_h (S, hd) = P_h · v_h, written into A16 (rows of qd, head h at column h·hd) */
        void *dst = at(u, u->A16, ((size_t)(w0 + w) * S) * qd);
        if (cublas_check(cublasGemmStridedBatchedEx(u->g.blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, S, S, &one, u->v16, u->at,
                                                    qd, hd, u->P16, u->at, S, (long long)S * S, &zero, dst, u->at,
                                                    qd, hd, nh, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "attention output"))
            return -1;
    }
    return 0;
}

/* MLP activation of chunk rows [r0, r0 + R) of X into in16: silu(gate(xn)) · up(xn). */
static int mlp_act(gpu_run *u, const llama_layer *L, size_t r0, int64_t R) {
    const cudaStream_t s = u->g.stream;
    if (gq_rmsnorm(u->in16, u->f32, u->X + r0 * u->dim, u->norm2, R, u->dim, u->m->cfg.norm_eps, s)) return -1;
    if (lin_fwd(u, L, LIN_GATE, u->in16, R, u->y1, 0.0f) || lin_fwd(u, L, LIN_UP, u->in16, R, u->y2, 0.0f)) return -1;
    return gq_silu_mul(u->in16, u->f32, u->y1, u->y2, R * u->hid, s);
}

static int run_block(gpu_run *u, int l) {
    llama_model *m = u->m;
    llama_layer *L = &m->layers[l];
    const hf_config *c = &m->cfg;
    const cudaStream_t s = u->g.stream;
    const int k0 = l * LIN_COUNT, S = u->S, dim = u->dim;
    gptq_cuda_hinv hv;
    memset(&hv, 0, sizeof hv);
    int rc = -1;
    if (upload(u->norm1, L->attn_norm, sizeof(float) * dim, u) || upload(u->norm2, L->ffn_norm, sizeof(float) * dim, u))
        return -1;
    for (int j = 0; j < LIN_COUNT; j++) {
        cudaFree(u->bias[j]);
        u->bias[j] = NULL;
        if (L->lin[j].bias && (dalloc(&u->bias[j], sizeof(float) * L->lin[j].out, "bias") ||
                               upload(u->bias[j], L->lin[j].bias, sizeof(float) * L->lin[j].out, u)))
            return -1;
    }

    /* 1. q, k, v from rmsnorm(X) */
    if (hess_begin(u, dim)) return -1;
    for (int w0 = 0; w0 < u->N; w0 += u->cw) {
        const int nw = u->N - w0 < u->cw ? u->N - w0 : u->cw;
        const int64_t R = (int64_t)nw * S;
        if (gq_rmsnorm(u->in16, u->f32, u->X + (size_t)w0 * S * dim, u->norm1, R, dim, c->norm_eps, s) || hess_add(u, u->in16, R))
            return -1;
    }
    if (hess_prepare(u, l, "self_attn.q_proj input", &hv)) return -1;
    for (int j = LIN_Q; j <= LIN_V; j++)
        if (quantize_linear_gpu(u, &L->lin[j], &hv, k0 + j, u->W16[j])) goto out;
    gptq_cuda_hinv_free(&hv);

    /* 2. o from the attention outputs */
    if (hess_begin(u, u->qd)) goto out;
    for (int w0 = 0; w0 < u->N; w0 += u->cw) {
        const int nw = u->N - w0 < u->cw ? u->N - w0 : u->cw;
        const int64_t R = (int64_t)nw * S;
        if (gq_rmsnorm(u->in16, u->f32, u->X + (size_t)w0 * S * dim, u->norm1, R, dim, c->norm_eps, s) ||
            lin_fwd(u, L, LIN_Q, u->in16, R, u->y1, 0.0f) || lin_fwd(u, L, LIN_K, u->in16, R, u->y2, 0.0f) ||
            lin_fwd(u, L, LIN_V, u->in16, R, u->y3, 0.0f) || attention(u, w0, nw) ||
            hess_add(u, at(u, u->A16, (size_t)w0 * S * u->qd), R))
            goto out;
    }
    if (hess_prepare(u, l, "self_attn.o_proj input", &hv) ||
        quantize_linear_gpu(u, &L->lin[LIN_O], &hv, k0 + LIN_O, u->W16[LIN_O]))
        goto out;
    gptq_cuda_hinv_free(&hv);

    /* 3. X += o(A); gate, up from rmsnorm(X) */
    if (hess_begin(u, dim)) goto out;
    for (int w0 = 0; w0 < u->N; w0 += u->cw) {
        const int nw = u->N - w0 < u->cw ? u->N - w0 : u->cw;
        const int64_t R = (int64_t)nw * S;
        float *xc = u->X + (size_t)w0 * S * dim;
        if (lin_fwd(u, L, LIN_O, at(u, u->A16, (size_t)w0 * S * u->qd), R, xc, 1.0f) ||
            gq_rmsnorm(u->in16, u->f32, xc, u->norm2, R, dim, c->norm_eps, s) || hess_add(u, u->in16, R))
            goto out;
    }
    if (hess_prepare(u, l, "mlp.gate_proj input", &hv)) goto out;
    for (int j = LIN_GATE; j <= LIN_UP; j++)
        if (quantize_linear_gpu(u, &L->lin[j], &hv, k0 + j, u->W16[j])) goto out;
    gptq_cuda_hinv_free(&hv);

    /* 4. down from the MLP activation */
    if (hess_begin(u, u->hid)) goto out;
    for (int w0 = 0; w0 < u->N; w0 += u->cw) {
        const int nw = u->N - w0 < u->cw ? u->N - w0 : u->cw;
        const int64_t R = (int64_t)nw * S;
        if (mlp_act(u, L, (size_t)w0 * S, R) || hess_add(u, u->in16, R)) goto out;
    }
    if (hess_prepare(u, l, "mlp.down_proj input", &hv) ||
        quantize_linear_gpu(u, &L->lin[LIN_DOWN], &hv, k0 + LIN_DOWN, u->W16[LIN_DOWN]))
        goto out;
    gptq_cuda_hinv_free(&hv);

    /* 5. X += down(act): the next block's input */
    for (int w0 = 0; w0 < u->N; w0 += u->cw) {
        const int nw = u->N - w0 < u->cw ? u->N - w0 : u->cw;
        const int64_t R = (int64_t)nw * S;
        if (mlp_act(u, L, (size_t)w0 * S, R) || lin_fwd(u, L, LIN_DOWN, u->in16, R, u->X + (size_t)w0 * S * dim, 1.0f))
            goto out;
    }
    rc = cu_check(cudaStreamSynchronize(s), "calibration forward pass");
    /* done with this block's file pages: keep the resident set to about one block */
    for (int j = 0; j < LIN_COUNT; j++)
        if (!L->lin[j].owned && L->lin[j].w)
            st_release(&m->st, L->lin[j].w, (size_t)L->lin[j].out * L->lin[j].in * dtype_size(L->lin[j].dtype));
out:
    gptq_cuda_hinv_free(&hv);
    return rc;
}

static int lm_head_gpu(gpu_run *u) {
    const hf_config *c = &u->m->cfg;
    const int S = u->S, dim = u->dim;
    gptq_cuda_hinv hv;
    memset(&hv, 0, sizeof hv);
    if (upload(u->norm1, u->m->final_norm, sizeof(float) * dim, u) || hess_begin(u, dim)) return -1;
    for (int w0 = 0; w0 < u->N; w0 += u->cw) {
        const int nw = u->N - w0 < u->cw ? u->N - w0 : u->cw;
        const int64_t R = (int64_t)nw * S;
        if (gq_rmsnorm(u->in16, u->f32, u->X + (size_t)w0 * S * dim, u->norm1, R, dim, c->norm_eps, u->g.stream) ||
            hess_add(u, u->in16, R))
            return -1;
    }
    int rc = hess_prepare(u, -1, "lm_head input", &hv);
    if (rc == 0) rc = quantize_linear_gpu(u, &u->m->lm_head, &hv, u->r->n_rows - 1, NULL);
    gptq_cuda_hinv_free(&hv);
    return rc;
}

static void run_free(gpu_run *u) {
    void *bufs[] = {u->X, u->A16, u->in16, u->y1, u->y2, u->y3, u->q16, u->k16, u->v16, u->scores, u->P16, u->H,
                    u->norm1, u->norm2, u->inv_freq, u->dw, u->dwq, u->raw};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    for (int j = 0; j < LIN_COUNT; j++) cudaFree(u->W16[j]), cudaFree(u->bias[j]);
    gptq_cuda_free(&u->g);
}

int quantize_cuda_available(void) {
    int n = 0;
    if (cu_check(cudaGetDeviceCount(&n), "looking for a GPU")) return -1;
    if (n < 1) return gptq_fail("CUDA: no GPU found");
    return 0;
}

static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* Device buffers for the whole run. */
static int run_alloc(gpu_run *u) {
    llama_model *m = u->m;
    const hf_config *c = &m->cfg;
    const int64_t S = u->S, R = (int64_t)u->cw * S, wide = imax(imax(u->dim, u->qd), u->hid);
    int64_t wmax = 0, hmax = imax(imax(u->dim, u->qd), u->hid);
    for (int j = 0; j < LIN_COUNT; j++) {
        const linear *l = &m->layers[0].lin[j];
        wmax = imax(wmax, l->out * l->in);
    }
    if (u->o->quantize_lm_head) wmax = imax(wmax, m->lm_head.out * m->lm_head.in);
    if (dalloc(&u->X, sizeof(float) * u->rows * u->dim, "the calibration activations") ||
        dalloc(&u->A16, u->es * u->rows * u->qd, "the attention outputs") ||
        dalloc(&u->in16, u->es * (size_t)(R * wide), "chunk buffers") ||
        dalloc(&u->y1, sizeof(float) * (size_t)(R * imax(u->qd, u->hid)), "chunk buffers") ||
        dalloc(&u->y2, sizeof(float) * (size_t)(R * imax(u->kvd, u->hid)), "chunk buffers") ||
        dalloc(&u->y3, sizeof(float) * (size_t)(R * u->kvd), "chunk buffers") ||
        dalloc(&u->q16, u->es * (size_t)(S * u->qd), "attention buffers") ||
        dalloc(&u->k16, u->es * (size_t)(S * u->qd), "attention buffers") ||
        dalloc(&u->v16, u->es * (size_t)(S * u->qd), "attention buffers") ||
        dalloc(&u->scores, sizeof(float) * (size_t)(u->nh * S * S), "attention scores") ||
        dalloc(&u->P16, u->es * (size_t)(u->nh * S * S), "attention scores") ||
        dalloc(&u->H, sizeof(float) * (size_t)(hmax * hmax), "the Hessian") ||
        dalloc(&u->norm1, sizeof(float) * u->dim, "norms") || dalloc(&u->norm2, sizeof(float) * u->dim, "norms") ||
        dalloc(&u->inv_freq, sizeof(float) * (u->hd / 2), "rope") ||
        dalloc(&u->dw, sizeof(float) * (size_t)wmax, "weights") || dalloc(&u->dwq, sizeof(float) * (size_t)wmax, "weights") ||
        dalloc(&u->raw, sizeof(float) * (size_t)wmax, "weights"))
        return -1;
    for (int j = 0; j < LIN_COUNT; j++) {
        const linear *l = &m->layers[0].lin[j];
        if (dalloc(&u->W16[j], u->es * (size_t)(l->out * l->in), "block weights")) return -1;
    }
    if (upload(u->inv_freq, m->rope_inv_freq, sizeof(float) * (c->head_dim / 2), u)) return -1;
    note_mem(u);
    return 0;
}

/* X = the embeddings of every calibration window. */
static int embed_all(gpu_run *u, const calib_set *calib) {
    const hf_config *c = &u->m->cfg;
    const int S = u->S;
    float *buf = xmalloc(sizeof(float) * (size_t)S * u->dim);
    int rc = 0;
    for (int w = 0; w < u->N && rc == 0; w++) {
        const int *ids = calib->ids + (size_t)w * S;
        for (int t = 0; t < S; t++)
            if (ids[t] < 0 || ids[t] >= c->vocab_size) {
                rc = gptq_fail("calibration token id %d is outside the vocabulary (%d)", ids[t], c->vocab_size);
                break;
            }
        if (rc) break;
        llama_embed(u->m, ids, S, buf);
        rc = upload(u->X + (size_t)w * S * u->dim, buf, sizeof(float) * (size_t)S * u->dim, u);
    }
    free(buf);
    return rc;
}

int quantize_model_cuda(llama_model *m, const calib_set *calib, const quant_options *o, quant_result *r) {
    const hf_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    double t_start = now_seconds();
    if (o->method != QMETHOD_GPTQ) return gptq_fail("--device cuda quantizes with GPTQ only (RTN runs on the CPU)");
    if (o->measure || o->layer_gp) return gptq_fail("--device cuda: mixed precision (--target-bpw) runs on the CPU only");
    if (o->hook) return gptq_fail("--device cuda: GGUF block formats run on the CPU only");
    if (o->hooks) return gptq_fail("--device cuda: resumable runs are not supported on the GPU");
    if (quant_check_bits(o->gp.bits) != 0) return -1;
    if (o->gp.group_size == 0 || o->gp.group_size < -1) return gptq_fail("group size must be -1 or positive, got %d", o->gp.group_size);
    if (o->gp.block_size < 1 || o->gp.block_size > GQ_MAX_BLOCK)
        return gptq_fail("--device cuda: --block %d is not supported (1..%d columns)", o->gp.block_size, GQ_MAX_BLOCK);
    if (o->quantize_lm_head && c->tie_embeddings)
        return gptq_fail("--quantize-lm-head: this model ties lm_head to the embeddings; quantizing it is not supported");
    if (!calib || calib->n < 1) return gptq_fail("GPTQ needs calibration data");
    if (c->n_heads % c->n_kv_heads) return gptq_fail("--device cuda: %d heads are not a multiple of %d kv heads", c->n_heads, c->n_kv_heads);

    gpu_run u;
    memset(&u, 0, sizeof u);
    u.m = m, u.o = o, u.r = r;
    u.f32 = o->gpu_fp32 != 0;
    u.es = u.f32 ? sizeof(float) : sizeof(uint16_t);
    u.at = u.f32 ? CUDA_R_32F : CUDA_R_16F;
    u.N = calib->n, u.S = calib->seqlen, u.dim = c->dim, u.hid = c->hidden_dim;
    u.nh = c->n_heads, u.nkv = c->n_kv_heads, u.hd = c->head_dim;
    u.qd = u.nh * u.hd, u.kvd = u.nkv * u.hd;
    u.rows = (size_t)u.N * u.S;
    u.cw = CHUNK_ROWS / u.S < 1 ? 1 : CHUNK_ROWS / u.S;
    if (u.cw > u.N) u.cw = u.N;
    if (gptq_cuda_init(&u.g)) return -1;
    quant_result_begin(m, r);
    int rc = run_alloc(&u);
    if (rc == 0) rc = embed_all(&u, calib);
    progress pg;
    progress_start(&pg, "gptq (cuda): block", c->n_layers);
    for (int l = 0; l < c->n_layers && rc == 0; l++) {
        rc = run_block(&u, l);
        progress_update(&pg, l + 1);
    }
    progress_end(&pg);
    if (rc == 0 && o->quantize_lm_head) rc = lm_head_gpu(&u);
    if (rc == 0) rc = cu_check(cudaStreamSynchronize(u.g.stream), "sync");
    note_mem(&u);
    const size_t total_mem = u.g.total_mem, min_free = u.g.min_free;
    run_free(&u);
    if (rc != 0) {
        quant_result_free(r);
        return -1;
    }
    r->gpu_peak_mb = total_mem && min_free != (size_t)-1 ? (double)(total_mem - min_free) / 1048576.0 : 0;
    quant_result_end(r, t_start);
    return 0;
}
