/* The Llama-family forward pass on a CUDA GPU (llama_cuda.h). */
#include "model/cuda/llama_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/linear.h"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/model_kernels.h"
#include "model/llama.h"

/* A Linear on the device: packed (q.qw != NULL) or dense fp16 w. */
typedef struct {
    int64_t out, in;
    cuq_layer q;
    uint16_t *w; /* (out, in) fp16 */
    float *bias; /* (out) or NULL */
} cu_linear;

typedef struct {
    float *attn_norm, *ffn_norm; /* (dim) */
    cu_linear lin[LIN_COUNT];
} cu_layer;

struct llama_cuda {
    hf_config cfg;
    int max_seq, max_batch;
    cudaStream_t stream;
    cublasHandle_t blas;
    uint16_t *embed; /* (vocab, dim) fp16 */
    cu_layer *layers;
    float *final_norm;
    cu_linear lm_head; /* its w borrows embed when tied */
    float *inv_freq;   /* (head_dim/2) */
    float *inv_freq_h; /* (head_dim/2) the same on the host (the fused attention takes it by value) */
    uint16_t *k_cache, *v_cache; /* (n_layers, max_seq, kvd) fp16 */
    /* activations: (max_batch, ...) fp32 */
    float *x, *xn, *q, *k, *v, *att, *hb, *hb2, *out, *logits_d;
    float *xbuf; /* (3, max_batch, widest in_pad) act-order permuted activations */
    float *att_part; /* split-attention partials of decode calls */
    int frag;        /* decode calls take the fragment-order GEMV (every layer qualifies: frag_eligible) */
    int attn_o;      /* one-token decode calls fuse attention, o_proj and the residual add (attn_o_eligible) */
    int fold;        /* ... and fold the RMSNorms into q/k/v and gate/up, down_proj adding into x (fold_eligible) */
    int prenorm;     /* ... or defer both norms (prenorm_eligible): down_proj adds into x and writes the
                        next q/k/v's input x · w and its Σx² per tile, q/k/v scale by 1 / rms; gate/up
                        read x · w from x themselves and scale their sums (cuq_frag_norm.deferred) */
    float *ssq;      /* (dim / 16) those partial sums */
    float *norm_inv; /* (2) the last 1 / rms of each deferred norm (the next one's input scale) */
    uint32_t *xf, *af, *hf; /* their fp16 activations in fragment order (cuq.h), (max decode tokens, ...):
                               the norms' output (dim), attention's (n_heads·hd), SwiGLU's (hidden) */
    uint16_t *w16, *x16; /* cuBLAS scratch: the widest dequantized layer, fp16 activations */
    int *pos_d, *ids_d; /* (1 + max_batch) in one allocation: the position, then the ids */
    int *pos_h, *ids_h; /* the same in pinned memory: one copy per call carries both */
    float *logits_h;    /* pinned (max_batch, vocab) */
    float *logits_map;  /* logits_h as the GPU addresses it: the decode graph's lm_head writes there */
    float *logits_dst;  /* where forward_device's lm_head writes (logits_d, or logits_map while the
                           decode graph is captured) */
    cudaGraphExec_t decode_graph;
    /* llama_cuda_time_steps: events around each decode graph replay, their summed time */
    cudaEvent_t step_ev[2];
    int step_timing, step_count;
    double step_gpu_ms;
    int64_t n_params;
    int n_quantized, bits;
    double weight_bytes;
    size_t mem_base; /* GPU memory in use before loading */
    double mem_peak;
};

/* Whether decode calls can run every Linear through the fragment-order GEMV: all packed,
 * tiled 4-bit without act-order (the norms and the attention write their outputs in the
 * fragment order of unpermuted inputs), widths multiples of 128, no bias on gate/up (the
 * pair applies SwiGLU to its raw sums). */
static int frag_eligible(const llama_cuda *m) {
    const hf_config *c = &m->cfg;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim;
    if (!cuq_frag_enabled() || c->dim % 128 || qd % 128 || c->hidden_dim % 128) return 0;
    for (int i = 0; i < c->n_layers; i++) {
        const cu_linear *l = m->layers[i].lin;
        for (int j = 0; j < LIN_COUNT; j++)
            if (!l[j].q.qw || !cuq_frag_ok(&l[j].q) || l[j].q.perm || l[j].q.in_pad != l[j].in) return 0;
        if (l[LIN_GATE].bias || l[LIN_UP].bias || l[LIN_GATE].out != l[LIN_UP].out || l[LIN_GATE].out != c->hidden_dim ||
            l[LIN_DOWN].in != c->hidden_dim || l[LIN_O].in != qd || l[LIN_Q].in != c->dim)
            return 0;
    }
    return 1;
}

/* Whether one-token decode calls also fold the norms (forward_folded): asked for with
 * GPTQ_CUDA_FOLD=1 (off by default: on the H100 no faster than the norm kernels, 7B decode
 * 2.002 / 2.003 against 1.992 / 1.996 ms in one run, 2.080 / 2.083 against 2.086 / 2.085 in
 * another), no bias on down_proj (its sums go straight into x), widths the fold takes. */
static int fold_eligible(const llama_cuda *m) {
    const hf_config *c = &m->cfg;
    const char *e = getenv("GPTQ_CUDA_FOLD");
    if (!m->attn_o || !(e && strcmp(e, "1") == 0) || c->dim * 2 + 16 > 48 * 1024) return 0;
    for (int i = 0; i < c->n_layers; i++)
        if (m->layers[i].lin[LIN_DOWN].bias) return 0;
    return 1;
}

/* Whether one-token decode calls defer the RMSNorms into the GEMVs around them, so that
 * no norm kernel runs: down_proj writes the next q/k/v's input (cuq_frag_opts), gate/up
 * convert x themselves (cuq_frag_norm.deferred), and both scale their sums by 1 / rms.
 * With the fused attention, no fold, no bias on down_proj or q/k/v (the scale comes before
 * any bias would), dim a multiple of 128 below 24K; GPTQ_CUDA_PRENORM=0 turns it off.
 * The inputs go to fp16 as x · w times the previous norm's 1 / rms, near 1 as the norm
 * kernel's output would be (forward_device). */
static int prenorm_eligible(const llama_cuda *m) {
    const hf_config *c = &m->cfg;
    const char *e = getenv("GPTQ_CUDA_PRENORM");
    if (!m->attn_o || m->fold || (e && strcmp(e, "0") == 0) || c->dim % 128 || c->dim * 2 + 16 > 48 * 1024) return 0;
    for (int i = 0; i < c->n_layers; i++) {
        const cu_layer *L = &m->layers[i];
        if (L->lin[LIN_DOWN].bias || L->lin[LIN_Q].bias || L->lin[LIN_K].bias || L->lin[LIN_V].bias) return 0;
    }
    return 1;
}

/* Whether one-token decode calls can take the fused attention + o_proj kernel
 * (kernels/cuda/attn_o.cu): the fragment-order path, head_dim 128, o_proj without bias. */
static int attn_o_eligible(const llama_cuda *m) {
    const hf_config *c = &m->cfg;
    if (!m->frag) return 0;
    for (int i = 0; i < c->n_layers; i++) {
        const cu_linear *o = &m->layers[i].lin[LIN_O];
        if (o->bias || o->out != c->dim || !cuk_attention_o_ok(&o->q, c->n_heads, c->n_kv_heads, c->head_dim, m->max_seq)) return 0;
    }
    return 1;
}

#define CUDA_TRY(call, what)                   \
    do {                                       \
        if (cu_check((call), (what))) goto fail; \
    } while (0)

static void *dalloc(size_t n, const char *what) {
    void *p = NULL;
    if (cu_check(cudaMalloc(&p, n), what)) return NULL;
    return p;
}

/* fp16 copy on the device of n floats of type dt (F32/F16/BF16) at src. */
static uint16_t *upload_f16(const void *src, gptq_dtype dt, int64_t n) {
    uint16_t *h = xmalloc(sizeof(uint16_t) * (size_t)n);
    if (dt == DT_F16) {
        memcpy(h, src, sizeof(uint16_t) * (size_t)n);
    } else {
        enum { CH = 1 << 16 };
        float *f = xmalloc(sizeof(float) * CH);
        for (int64_t i = 0; i < n; i += CH) {
            int64_t c = n - i < CH ? n - i : CH;
            convert_to_f32(f, (const char *)src + i * (int64_t)dtype_size(dt), dt, (size_t)c);
            for (int64_t j = 0; j < c; j++) h[i + j] = f32_to_f16(f[j]);
        }
        free(f);
    }
    uint16_t *d = dalloc(sizeof(uint16_t) * (size_t)n, "weights");
    if (d && cu_check(cudaMemcpy(d, h, sizeof(uint16_t) * (size_t)n, cudaMemcpyHostToDevice), "uploading weights")) {
        cudaFree(d);
        d = NULL;
    }
    free(h);
    return d;
}

static float *upload_f32(const float *h, int64_t n) {
    float *d = dalloc(sizeof(float) * (size_t)n, "vectors");
    if (d && cu_check(cudaMemcpy(d, h, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice), "uploading vectors")) {
        cudaFree(d);
        d = NULL;
    }
    return d;
}

/* A host Linear (model/linear.h) on the device: packed layers stay packed, dense ones go
 * to fp16. */
static int upload_linear(llama_cuda *m, const linear *h, cu_linear *l) {
    memset(l, 0, sizeof *l);
    l->out = h->out, l->in = h->in;
    if (h->qk) {
        if (cuq_upload(h->qk, &l->q)) return -1;
        m->n_quantized++;
        m->bits = h->qk->bits;
        m->weight_bytes += (double)cuq_stream_bytes(&l->q);
    } else {
        if (!(l->w = upload_f16(h->w, h->dtype, h->out * h->in))) return -1;
        m->weight_bytes += 2.0 * (double)(h->out * h->in);
    }
    if (h->bias && !(l->bias = upload_f32(h->bias, h->out))) return -1;
    return 0;
}

static void free_linear(cu_linear *l) {
    cuq_free(&l->q);
    cudaFree(l->w);
    cudaFree(l->bias);
    memset(l, 0, sizeof *l);
}

static void note_memory(llama_cuda *m) {
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) == cudaSuccess) {
        double used = (double)(total - free_b) - (double)m->mem_base;
        if (used > m->mem_peak) m->mem_peak = used;
    }
}

llama_cuda *llama_cuda_load(const char *dir, int max_seq, int max_batch) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        gptq_fail("--device cuda: no CUDA device is available");
        return NULL;
    }
    if (!fs_is_dir(dir)) {
        gptq_fail("%s: not a model directory", dir);
        return NULL;
    }
    llama_cuda *m = xcalloc(1, sizeof *m);
    llama_model cm; /* the host model: validated tensors, packed qk layers, rope table */
    int cm_loaded = 0;
    size_t free0 = 0, total0 = 0;
    CUDA_TRY(cudaSetDevice(0), "selecting GPU 0");
    CUDA_TRY(cudaMemGetInfo(&free0, &total0), "reading GPU memory");
    m->mem_base = total0 - free0;
    if (llama_load_ex(&cm, dir, 0)) goto fail;
    cm_loaded = 1;
    {
        char *cfg_path = fs_join(dir, "config.json"); /* our own copy of the shapes */
        int rc = hf_config_load(&m->cfg, cfg_path);
        free(cfg_path);
        if (rc) goto fail;
    }
    const hf_config *c = &m->cfg;
    m->max_seq = max_seq, m->max_batch = max_batch;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    CUDA_TRY(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking), "creating a stream");
    if (cublas_check(cublasCreate(&m->blas), "creating a handle") ||
        cublas_check(cublasSetStream(m->blas, m->stream), "setting the stream"))
        goto fail;
    if (!(m->embed = upload_f16(cm.tok_embed, cm.embed_dtype, (int64_t)c->vocab_size * c->dim))) goto fail;
    m->layers = xcalloc((size_t)c->n_layers, sizeof(cu_layer));
    for (int i = 0; i < c->n_layers; i++) {
        cu_layer *L = &m->layers[i];
        if (!(L->attn_norm = upload_f32(cm.layers[i].attn_norm, c->dim)) || !(L->ffn_norm = upload_f32(cm.layers[i].ffn_norm, c->dim)))
            goto fail;
        for (int j = 0; j < LIN_COUNT; j++) {
            if (upload_linear(m, &cm.layers[i].lin[j], &L->lin[j])) goto fail;
            linear_free(&cm.layers[i].lin[j]); /* the host copy is not needed any more */
        }
    }
    if (!(m->final_norm = upload_f32(cm.final_norm, c->dim))) goto fail;
    if (c->tie_embeddings) {
        m->lm_head = (cu_linear){.out = c->vocab_size, .in = c->dim, .w = m->embed};
        m->weight_bytes += 2.0 * (double)c->vocab_size * c->dim;
    } else if (upload_linear(m, &cm.lm_head, &m->lm_head)) {
        goto fail;
    }
    if (!(m->inv_freq = upload_f32(cm.rope_inv_freq, c->head_dim / 2))) goto fail;
    m->inv_freq_h = xmalloc(sizeof(float) * (size_t)(c->head_dim / 2));
    memcpy(m->inv_freq_h, cm.rope_inv_freq, sizeof(float) * (size_t)(c->head_dim / 2));
    m->n_params = cm.n_params;
    llama_free(&cm);
    cm_loaded = 0;

    /* state */
    const size_t B = (size_t)max_batch, cache = (size_t)c->n_layers * (size_t)max_seq * (size_t)kvd;
    size_t wide = (size_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim);
    if (wide < (size_t)qd) wide = (size_t)qd;
    size_t w16 = 0, inpad = wide;
    for (int i = 0; i <= c->n_layers; i++)
        for (int j = 0; j < (i < c->n_layers ? LIN_COUNT : 1); j++) {
            const cu_linear *l = i < c->n_layers ? &m->layers[i].lin[j] : &m->lm_head;
            if (l->q.qw && (size_t)(l->out * l->q.in_pad) > w16) w16 = (size_t)(l->out * l->q.in_pad);
            if (l->q.qw && (size_t)l->q.in_pad > inpad) inpad = (size_t)l->q.in_pad;
        }
    if (!(m->k_cache = dalloc(sizeof(uint16_t) * cache, "KV cache")) || !(m->v_cache = dalloc(sizeof(uint16_t) * cache, "KV cache")) ||
        !(m->x = dalloc(sizeof(float) * B * c->dim, "activations")) || !(m->xn = dalloc(sizeof(float) * B * wide, "activations")) ||
        !(m->q = dalloc(sizeof(float) * B * qd, "activations")) || !(m->k = dalloc(sizeof(float) * B * kvd, "activations")) ||
        !(m->v = dalloc(sizeof(float) * B * kvd, "activations")) || !(m->att = dalloc(sizeof(float) * B * qd, "activations")) ||
        !(m->hb = dalloc(sizeof(float) * B * c->hidden_dim, "activations")) ||
        !(m->hb2 = dalloc(sizeof(float) * B * c->hidden_dim, "activations")) ||
        !(m->out = dalloc(sizeof(float) * B * wide, "activations")) ||
        !(m->logits_d = dalloc(sizeof(float) * B * c->vocab_size, "logits")) ||
        !(m->xbuf = dalloc(sizeof(float) * 3 * B * inpad, "activations")) || /* up to 3 permuted copies */
        !(m->x16 = dalloc(sizeof(uint16_t) * B * inpad, "activations")) ||
        (w16 && !(m->w16 = dalloc(sizeof(uint16_t) * w16, "dequantization scratch"))) ||
        !(m->att_part = dalloc(sizeof(float) * (size_t)cuk_attention_split_floats(
                                   B < CUQ_MAX_GEMV_T ? (int)B : CUQ_MAX_GEMV_T, max_seq, c->n_heads, c->head_dim),
                               "attention scratch")) ||
        !(m->pos_d = dalloc(sizeof(int) * (1 + B), "position and ids")))
        goto fail;
    m->ids_d = m->pos_d + 1;
    CUDA_TRY(cudaMemset(m->att_part, 0, sizeof(float) * (size_t)cuk_attention_split_floats(
                                             B < CUQ_MAX_GEMV_T ? (int)B : CUQ_MAX_GEMV_T, max_seq, c->n_heads, c->head_dim)),
             "attention scratch");
    CUDA_TRY(cudaMallocHost((void **)&m->pos_h, sizeof(int) * (1 + B)), "pinned memory");
    m->ids_h = m->pos_h + 1;
    CUDA_TRY(cudaMallocHost((void **)&m->logits_h, sizeof(float) * B * c->vocab_size), "pinned memory");
    /* pinned memory is mapped into the GPU's address space (unified addressing) */
    CUDA_TRY(cudaHostGetDevicePointer((void **)&m->logits_map, m->logits_h, 0), "mapping the logits");
    m->logits_dst = m->logits_d;
    if (cuk_attention_setup(max_seq)) goto fail;
    if ((m->frag = frag_eligible(m))) {
        const int64_t T = CUQ_MAX_GEMV_T;
        if (!(m->xf = dalloc(sizeof(uint32_t) * (size_t)cuq_frag_words(c->dim, (int)T), "activations")) ||
            !(m->af = dalloc(sizeof(uint32_t) * (size_t)cuq_frag_words(qd, (int)T), "activations")) ||
            !(m->hf = dalloc(sizeof(uint32_t) * (size_t)cuq_frag_words(c->hidden_dim, (int)T), "activations")))
            goto fail;
    }
    m->attn_o = attn_o_eligible(m);
    m->fold = fold_eligible(m);
    if ((m->prenorm = prenorm_eligible(m)) &&
        (!(m->ssq = dalloc(sizeof(float) * (size_t)(c->dim / 16), "norm partial sums")) ||
         !(m->norm_inv = dalloc(sizeof(float) * 2, "norm scales"))))
        goto fail;
    note_memory(m);
    return m;
fail:
    if (cm_loaded) llama_free(&cm);
    llama_cuda_free(m);
    return NULL;
}

void llama_cuda_free(llama_cuda *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layers; i++) {
            cudaFree(m->layers[i].attn_norm), cudaFree(m->layers[i].ffn_norm);
            for (int j = 0; j < LIN_COUNT; j++) free_linear(&m->layers[i].lin[j]);
        }
        free(m->layers);
    }
    if (m->lm_head.w == m->embed) m->lm_head.w = NULL;
    free_linear(&m->lm_head);
    free(m->inv_freq_h);
    cudaFree(m->embed), cudaFree(m->final_norm), cudaFree(m->inv_freq), cudaFree(m->k_cache), cudaFree(m->v_cache);
    cudaFree(m->x), cudaFree(m->xn), cudaFree(m->q), cudaFree(m->k), cudaFree(m->v), cudaFree(m->att), cudaFree(m->hb);
    cudaFree(m->hb2), cudaFree(m->out), cudaFree(m->logits_d), cudaFree(m->xbuf), cudaFree(m->x16), cudaFree(m->w16);
    cudaFree(m->pos_d), cudaFree(m->att_part), cudaFree(m->xf), cudaFree(m->af), cudaFree(m->hf);
    cudaFree(m->ssq), cudaFree(m->norm_inv);
    cudaFreeHost(m->pos_h), cudaFreeHost(m->logits_h);
    if (m->decode_graph) cudaGraphExecDestroy(m->decode_graph);
    if (m->blas) cublasDestroy(m->blas);
    for (int i = 0; i < 2; i++)
        if (m->step_ev[i]) cudaEventDestroy(m->step_ev[i]);
    if (m->stream) cudaStreamDestroy(m->stream);
    hf_config_free(&m->cfg);
    free(m);
}

const hf_config *llama_cuda_config(const llama_cuda *m) { return &m->cfg; }

/* y (n, out) = x (n, in) · Wᵀ (+ b). */
static int run_linear(llama_cuda *m, const cu_linear *l, float *y, const float *x, int n) {
    int rc;
    if (l->q.qw)
        rc = n <= CUQ_MAX_GEMV_T ? cuq_gemv(&l->q, y, x, m->xbuf, n, m->stream)
                                 : cuq_gemm(m->blas, &l->q, y, x, n, m->w16, m->x16, m->stream);
    else
        rc = n <= CUQ_MAX_GEMV_T ? cuh_gemv(l->w, l->out, l->in, y, x, n, m->stream)
                                 : cuh_gemm(m->blas, l->w, l->out, l->in, y, x, n, m->x16, m->stream);
    if (rc == 0 && l->bias) rc = cuk_bias(y, l->bias, l->out, n, m->stream);
    return rc;
}

/* ys[k] = x · W_kᵀ for n layers reading the same x: packed layers of a decode call share
 * one launch where the kernels allow. */
static int run_linears(llama_cuda *m, const cu_linear *const *ls, float *const *ys, int nl, const float *x, int n) {
    int packed = n <= CUQ_MAX_GEMV_T;
    for (int k = 0; k < nl; k++) packed &= ls[k]->q.qw != NULL;
    if (!packed) {
        for (int k = 0; k < nl; k++)
            if (run_linear(m, ls[k], ys[k], x, n)) return -1;
        return 0;
    }
    const cuq_layer *q[3];
    for (int k = 0; k < nl; k++) q[k] = &ls[k]->q;
    if (cuq_gemv_multi(q, ys, nl, x, m->xbuf, n, m->stream)) return -1;
    for (int k = 0; k < nl; k++)
        if (ls[k]->bias && cuk_bias(ys[k], ls[k]->bias, ls[k]->out, n, m->stream)) return -1;
    return 0;
}

/* y = (silu(g) · u) · Wᵀ (+ b): decode calls of packed layers take the SwiGLU inside the
 * GEMV's activation loads (cuq_gemv_silu); g may be overwritten with silu(g) · u. */
static int run_down(llama_cuda *m, const cu_linear *l, float *y, float *g, const float *u, int n) {
    if (l->q.qw && n <= CUQ_MAX_GEMV_T) {
        if (cuq_gemv_silu(&l->q, y, g, u, m->xbuf, n, m->stream)) return -1;
        return l->bias ? cuk_bias(y, l->bias, l->out, n, m->stream) : 0;
    }
    return cuk_silu_mul(g, u, (int64_t)n * l->in, m->stream) || run_linear(m, l, y, g, n);
}

/* Bias adds after a GEMV of nl layers (the fragment-order path). */
static int add_biases(llama_cuda *m, const cu_linear *const *ls, float *const *ys, int nl, int n) {
    for (int k = 0; k < nl; k++)
        if (ls[k]->bias && cuk_bias(ys[k], ls[k]->bias, ls[k]->out, n, m->stream)) return -1;
    return 0;
}

/* One-token decode with every fusion (m->fold): per layer four kernels, each block of the
 * q/k/v and gate/up GEMVs computing the RMSNorm of the residual x itself, the attention
 * kernel adding o_proj's output into x, down_proj adding its own (cuq.h, model_kernels.h).
 * Leaves final_norm(x) in xn for the lm_head. */
static int forward_folded(llama_cuda *m) {
    const hf_config *c = &m->cfg;
    const int dim = c->dim, hd = c->head_dim;
    const int64_t kvd = (int64_t)c->n_kv_heads * hd;
    cudaStream_t s = m->stream;
    if (cuk_embed(m->embed, m->ids_d, m->x, 1, dim, s)) return -1;
    for (int i = 0; i < c->n_layers; i++) {
        const cu_layer *L = &m->layers[i];
        uint16_t *kc = m->k_cache + (size_t)i * m->max_seq * kvd, *vc = m->v_cache + (size_t)i * m->max_seq * kvd;
        const cu_linear *qkv[3] = {&L->lin[LIN_Q], &L->lin[LIN_K], &L->lin[LIN_V]};
        const cuq_layer *q3[3] = {&qkv[0]->q, &qkv[1]->q, &qkv[2]->q}, *qd = &L->lin[LIN_DOWN].q;
        float *const qkv_y[3] = {m->q, m->k, m->v};
        const cuq_frag_norm n1 = {m->x, L->attn_norm, c->norm_eps, 0, NULL, NULL}, n2 = {m->x, L->ffn_norm, c->norm_eps, 0, NULL, NULL};
        if (cuq_gemv_frag_ex(q3, qkv_y, 3, NULL, 1, &n1, 0, s) || add_biases(m, qkv, qkv_y, 3, 1) ||
            cuk_attention_o_decode(m->q, m->k, m->v, kc, vc, m->inv_freq_h, m->pos_d, &L->lin[LIN_O].q, m->x, m->max_seq,
                                   c->n_heads, c->n_kv_heads, hd, &L->lin[LIN_GATE].q, &L->lin[LIN_UP].q, s) ||
            cuq_gemv_swiglu_frag_ex(&L->lin[LIN_GATE].q, &L->lin[LIN_UP].q, m->hf, NULL, NULL, 1, &n2, s) ||
            cuq_gemv_frag_ex(&qd, &m->x, 1, m->hf, 1, NULL, 1, s))
            return -1;
    }
    if (cuk_rmsnorm(m->xn, m->x, m->final_norm, 1, dim, c->norm_eps, NULL, s)) return -1;
    return run_linear(m, &m->lm_head, m->logits_dst, m->xn, 1);
}

/* Everything after the H2D copies of ids and position, up to the logits on the device.
 * Decode calls of a model whose layers all qualify (m->frag) keep their activations also
 * in fragment order: the norms and the attention write it beside their fp32 output, the
 * gate/up pair writes SwiGLU's straight into it, and every Linear reads it. */
static int forward_device(llama_cuda *m, int n, int all_logits) {
    const hf_config *c = &m->cfg;
    const int dim = c->dim, hd = c->head_dim;
    const int64_t kvd = (int64_t)c->n_kv_heads * hd;
    const int fr = m->frag && n <= CUQ_MAX_GEMV_T;
    uint32_t *xf = fr ? m->xf : NULL, *af = fr ? m->af : NULL;
    cudaStream_t s = m->stream;
    if (fr && n == 1 && m->fold) return forward_folded(m);
    /* one-token decode with deferred norms: 1 / rms of the embedding (rms_b below) is layer
     * 0's gate/up input scale */
    const int dnorm = fr && n == 1 && m->attn_o && m->prenorm;
    if (cuk_embed_rmsnorm(m->embed, m->ids_d, m->x, m->xn, m->layers[0].attn_norm, n, dim, c->norm_eps, xf,
                          dnorm ? m->norm_inv + 1 : NULL, s))
        return -1;
    int lm_fold = 0; /* the last down_proj left x unnormed: the lm_head makes the final norm */
    for (int i = 0; i < c->n_layers; i++) {
        const cu_layer *L = &m->layers[i];
        uint16_t *kc = m->k_cache + (size_t)i * m->max_seq * kvd, *vc = m->v_cache + (size_t)i * m->max_seq * kvd;
        /* xn holds norm(x) on entry; the residual adds are fused with the following norms */
        const float *next_norm = i + 1 < c->n_layers ? m->layers[i + 1].attn_norm : m->final_norm;
        const cu_linear *qkv[3] = {&L->lin[LIN_Q], &L->lin[LIN_K], &L->lin[LIN_V]}, *gu[2] = {&L->lin[LIN_GATE], &L->lin[LIN_UP]};
        const cu_linear *o = &L->lin[LIN_O], *down = &L->lin[LIN_DOWN];
        float *const qkv_y[3] = {m->q, m->k, m->v}, *const gu_y[2] = {m->hb, m->hb2};
        if (fr) {
            const cuq_layer *q3[3] = {&qkv[0]->q, &qkv[1]->q, &qkv[2]->q}, *qo = &o->q, *qd = &down->q;
            if (n == 1 && m->attn_o) { /* attention, o_proj and the residual add in one kernel */
                /* Deferred norms (m->prenorm), layers after the first: q/k/v take x · w from the
                 * previous down_proj, gate/up read x themselves; both scale their sums by 1 / rms.
                 * Their fp16 inputs are made times the norm before's 1 / rms, which stays near
                 * the right one: rms_b (q/k/v's, for gate/up) and rms_a (gate/up's, for down_proj
                 * and the next q/k/v).  Layer 0 takes the norm kernels (nothing before to ask). */
                float *rms_a = m->norm_inv, *rms_b = m->norm_inv + 1;
                const int dfr = m->prenorm && i > 0, dgu = m->prenorm; /* layer 0's gate/up: rms_b from the first norm */
                cuq_frag_opts qo_opt = {0}, dn_opt = {0};
                qo_opt.rms_ssq = dfr ? m->ssq : NULL, qo_opt.rms_n = dim / 16, qo_opt.rms_eps = c->norm_eps;
                qo_opt.rms_scale = dfr && i > 1 ? rms_a : NULL, qo_opt.rms_out = dfr ? rms_b : NULL;
                dn_opt.accumulate = 1, dn_opt.pre_w = next_norm, dn_opt.pre_xf = xf, dn_opt.pre_ssq = m->ssq;
                dn_opt.pre_scale = dfr ? rms_a : NULL;
                const int pre = m->prenorm && i + 1 < c->n_layers; /* the last layer's norm is the final one */
                const cuq_frag_norm ffn = {m->x, L->ffn_norm, c->norm_eps, 1, rms_b, rms_a};
                if (cuq_gemv_frag_opt(q3, qkv_y, 3, xf, n, &qo_opt, s) || add_biases(m, qkv, qkv_y, 3, n) ||
                    cuk_attention_o_decode(m->q, m->k, m->v, kc, vc, m->inv_freq_h, m->pos_d, qo, m->x, m->max_seq, c->n_heads,
                                           c->n_kv_heads, hd, dgu ? &gu[0]->q : NULL, dgu ? &gu[1]->q : NULL, s) ||
                    (dgu ? cuq_gemv_swiglu_frag_ex(&gu[0]->q, &gu[1]->q, m->hf, NULL, NULL, n, &ffn, s)
                                : cuk_rmsnorm(m->xn, m->x, L->ffn_norm, n, dim, c->norm_eps, xf, s) ||
                                      cuq_gemv_swiglu_frag(&gu[0]->q, &gu[1]->q, m->hf, NULL, xf, n, s)))
                    return -1;
                /* the last layer: x += down_proj, the final norm inside the fp16 lm_head */
                lm_fold = !pre && m->prenorm && !down->bias && !m->lm_head.q.qw && !m->lm_head.bias;
                cuq_frag_opts acc_opt = {0};
                acc_opt.accumulate = 1;
                if (pre ? cuq_gemv_frag_opt(&qd, &m->x, 1, m->hf, n, &dn_opt, s)
                        : lm_fold ? cuq_gemv_frag_opt(&qd, &m->x, 1, m->hf, n, &acc_opt, s)
                                  : cuq_gemv_frag(&qd, &m->out, 1, m->hf, n, s) || add_biases(m, &down, &m->out, 1, n) ||
                                        cuk_add_rmsnorm(m->xn, m->x, m->out, next_norm, n, dim, c->norm_eps, xf, s))
                    return -1;
                continue;
            }
            if (cuq_gemv_frag(q3, qkv_y, 3, xf, n, s) || add_biases(m, qkv, qkv_y, 3, n) ||
                cuk_rope_attention_decode(m->q, m->k, m->v, kc, vc, m->inv_freq, m->att, af, m->att_part, m->pos_d, n,
                                          m->max_seq, c->n_heads, c->n_kv_heads, hd, s) ||
                cuq_gemv_frag(&qo, &m->out, 1, af, n, s) || add_biases(m, &o, &m->out, 1, n) ||
                cuk_add_rmsnorm(m->xn, m->x, m->out, L->ffn_norm, n, dim, c->norm_eps, xf, s) ||
                cuq_gemv_swiglu_frag(&gu[0]->q, &gu[1]->q, m->hf, NULL, xf, n, s) ||
                cuq_gemv_frag(&qd, &m->out, 1, m->hf, n, s) || add_biases(m, &down, &m->out, 1, n) ||
                cuk_add_rmsnorm(m->xn, m->x, m->out, next_norm, n, dim, c->norm_eps, xf, s))
                return -1;
            continue;
        }
        if (run_linears(m, qkv, qkv_y, 3, m->xn, n) ||
            (n <= CUQ_MAX_GEMV_T /* decode: RoPE inside the split attention */
                 ? cuk_rope_attention_decode(m->q, m->k, m->v, kc, vc, m->inv_freq, m->att, NULL, m->att_part, m->pos_d, n,
                                             m->max_seq, c->n_heads, c->n_kv_heads, hd, s)
                 : cuk_rope_kv(m->q, m->k, m->v, kc, vc, m->inv_freq, m->pos_d, n, c->n_heads, c->n_kv_heads, hd, s) ||
                       cuk_attention(m->q, kc, vc, m->att, m->pos_d, n, m->max_seq, c->n_heads, c->n_kv_heads, hd, s)) ||
            run_linear(m, o, m->out, m->att, n) ||
            cuk_add_rmsnorm(m->xn, m->x, m->out, L->ffn_norm, n, dim, c->norm_eps, NULL, s) ||
            run_linears(m, gu, gu_y, 2, m->xn, n) ||
            run_down(m, down, m->out, m->hb, m->hb2, n) ||
            cuk_add_rmsnorm(m->xn, m->x, m->out, next_norm, n, dim, c->norm_eps, NULL, s))
            return -1;
    }
    if (lm_fold) return cuh_gemv_norm(m->lm_head.w, m->lm_head.out, m->lm_head.in, m->logits_dst, m->x, m->final_norm, c->norm_eps, s);
    /* xn = final_norm(x) now */
    if (all_logits) return run_linear(m, &m->lm_head, m->logits_dst, m->xn, n);
    return run_linear(m, &m->lm_head, m->logits_dst, m->xn + (size_t)(n - 1) * dim, 1);
}

/* GPTQ_CUDA_TRACE=FILE: decode step number GPTQ_CUDA_TRACE_STEP (default 200) records the
 * block timeline of its kernels (cu_common.cuh: TraceRec) into FILE as text, one line per
 * thread block: tag block grid smid t0 twait tend ta tb (ns, from the step's first block;
 * ta, tb: marks inside the kernel, -1 where it sets none).
 * Tags: 1 rmsnorm, 2 fragment GEMV, 3 its persistent form, 7 the persistent gate/up pair,
 * 8 the pair, 9 the persistent dual form (q/k/v), 4 split attention, 5 fused attention +
 * o_proj, 6 fp16 GEMV (lm_head). */
enum { TRACE_CAP = 1 << 18 };
static void *trace_buf;
static long trace_calls;

static int trace_step_begin(llama_cuda *m) {
    (void)m;
    const char *f = getenv("GPTQ_CUDA_TRACE"), *st = getenv("GPTQ_CUDA_TRACE_STEP");
    if (!f || !*f || ++trace_calls != (st && *st ? atol(st) : 200)) return 0;
    const size_t bytes = 16 + (size_t)TRACE_CAP * 56;
    if (!trace_buf && cudaMalloc(&trace_buf, bytes) != cudaSuccess) return 0;
    const unsigned hdr[4] = {0, TRACE_CAP, 0, 0};
    if (cudaMemcpy(trace_buf, hdr, sizeof hdr, cudaMemcpyHostToDevice) != cudaSuccess) return 0;
    cuk_trace_bind(trace_buf);
    return 1;
}

static int trace_step_end(llama_cuda *m) {
    if (cu_check(cudaStreamSynchronize(m->stream), "traced decode step")) return -1;
    cuk_trace_bind(NULL);
    unsigned hdr[4];
    if (cu_check(cudaMemcpy(hdr, trace_buf, sizeof hdr, cudaMemcpyDeviceToHost), "trace")) return -1;
    const unsigned n = hdr[0] < TRACE_CAP ? hdr[0] : TRACE_CAP;
    struct rec { unsigned tag, block, smid, grid; unsigned long long t0, tw, te, ta, tb; } *r = malloc(sizeof *r * (n ? n : 1));
    if (!r) return gptq_fail("trace: out of memory");
    if (cu_check(cudaMemcpy(r, (char *)trace_buf + 16, sizeof *r * n, cudaMemcpyDeviceToHost), "trace")) {
        free(r);
        return -1;
    }
    unsigned long long t0 = ~0ull;
    for (unsigned i = 0; i < n; i++)
        if (r[i].t0 < t0) t0 = r[i].t0;
    const char *path = getenv("GPTQ_CUDA_TRACE");
    FILE *f = fopen(path, "w");
    if (!f) {
        free(r);
        return gptq_fail("%s: cannot write the trace", path);
    }
    for (unsigned i = 0; i < n; i++)
        fprintf(f, "%u %u %u %u %llu %llu %llu %lld %lld\n", r[i].tag, r[i].block, r[i].grid, r[i].smid, r[i].t0 - t0,
                r[i].tw - t0, r[i].te - t0, r[i].ta ? (long long)(r[i].ta - t0) : -1LL, r[i].tb ? (long long)(r[i].tb - t0) : -1LL);
    fclose(f);
    free(r);
    fprintf(stderr, "trace: %u blocks of decode step %ld -> %s\n", n, trace_calls, path);
    return 0;
}

const float *llama_cuda_forward(llama_cuda *m, const int *ids, int n, int pos0, int all_logits) {
    const hf_config *c = &m->cfg;
    if (n < 1 || n > m->max_batch || pos0 < 0 || pos0 + n > m->max_seq) {
        gptq_fail("cuda forward: %d tokens at position %d do not fit (batch %d, context %d)", n, pos0, m->max_batch, m->max_seq);
        return NULL;
    }
    for (int t = 0; t < n; t++) {
        if (ids[t] < 0 || ids[t] >= c->vocab_size) {
            gptq_fail("cuda forward: token id %d outside the vocabulary (%d)", ids[t], c->vocab_size);
            return NULL;
        }
        m->ids_h[t] = ids[t];
    }
    *m->pos_h = pos0;
    const int rows = all_logits ? n : 1;
    const size_t lbytes = sizeof(float) * (size_t)rows * c->vocab_size;
    cudaStream_t s = m->stream;
    if (n == 1 && !all_logits) {
        /* decode: one graph holding the input copies, the whole step and the logits copy */
        if (!m->decode_graph) {
            cudaGraph_t g;
            if (cu_check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capturing the decode step"))
                return NULL;
            /* an fp16 lm_head (plain stores, one per logit) writes the logits straight into
               pinned host memory, its stores crossing the bus while it streams its weights,
               where a copy after it cost the step a node of its own (GPTQ_CUDA_ZERO_COPY=0:
               the copy, benchmarks) */
            static int zero_copy_env = -1;
            if (zero_copy_env < 0) {
                const char *e = getenv("GPTQ_CUDA_ZERO_COPY");
                zero_copy_env = !(e && strcmp(e, "0") == 0);
            }
            const int zero_copy = zero_copy_env && !m->lm_head.q.qw && !m->lm_head.bias;
            if (zero_copy) m->logits_dst = m->logits_map;
            int rc = cu_check(cudaMemcpyAsync(m->pos_d, m->pos_h, sizeof(int) * 2, cudaMemcpyHostToDevice, s), "position and id") ||
                     forward_device(m, 1, 0) ||
                     (!zero_copy && cu_check(cudaMemcpyAsync(m->logits_h, m->logits_d, lbytes, cudaMemcpyDeviceToHost, s), "logits"));
            m->logits_dst = m->logits_d;
            cudaError_t e = cudaStreamEndCapture(s, &g);
            if (rc || cu_check(e, "capturing the decode step")) return NULL;
            e = cudaGraphInstantiate(&m->decode_graph, g, 0);
            cudaGraphDestroy(g);
            if (cu_check(e, "instantiating the decode graph")) {
                m->decode_graph = NULL;
                return NULL;
            }
        }
        const int traced = trace_step_begin(m);
        if (m->step_timing && cu_check(cudaEventRecord(m->step_ev[0], s), "timing the decode step")) return NULL;
        if (cu_check(cudaGraphLaunch(m->decode_graph, s), "decode step")) return NULL;
        if (m->step_timing && cu_check(cudaEventRecord(m->step_ev[1], s), "timing the decode step")) return NULL;
        if (traced && trace_step_end(m)) return NULL;
    } else {
        if (cu_check(cudaMemcpyAsync(m->pos_d, m->pos_h, sizeof(int) * (size_t)(1 + n), cudaMemcpyHostToDevice, s),
                     "position and ids") ||
            forward_device(m, n, all_logits) ||
            cu_check(cudaMemcpyAsync(m->logits_h, m->logits_d, lbytes, cudaMemcpyDeviceToHost, s), "logits"))
            return NULL;
    }
    if (cu_check(cudaStreamSynchronize(s), "forward pass")) return NULL;
    if (n > 1) note_memory(m);
    if (m->step_timing && n == 1 && !all_logits) {
        float ms = 0.f;
        if (cu_check(cudaEventElapsedTime(&ms, m->step_ev[0], m->step_ev[1]), "timing the decode step")) return NULL;
        m->step_gpu_ms += ms, m->step_count++;
    }
    return m->logits_h;
}

int llama_cuda_time_steps(llama_cuda *m, int on) {
    for (int i = 0; on && i < 2; i++)
        if (!m->step_ev[i] && cu_check(cudaEventCreate(&m->step_ev[i]), "creating timing events")) return -1;
    m->step_timing = on != 0, m->step_count = 0, m->step_gpu_ms = 0;
    return 0;
}

double llama_cuda_step_gpu_ms(const llama_cuda *m) { return m->step_count ? m->step_gpu_ms / m->step_count : 0; }

void llama_cuda_get_info(llama_cuda *m, llama_cuda_info *info) {
    memset(info, 0, sizeof *info);
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) snprintf(info->device, sizeof info->device, "%s", p.name);
    note_memory(m);
    info->n_params = m->n_params;
    info->n_quantized = m->n_quantized;
    info->bits = m->bits;
    info->weight_bytes = m->weight_bytes;
    info->kv_bytes_per_pos = 2.0 * 2.0 * m->cfg.n_layers * (double)m->cfg.n_kv_heads * m->cfg.head_dim;
    info->gpu_mem_peak = m->mem_peak;
    info->frag_decode = m->frag;
    info->attn_o_decode = m->attn_o;
    info->fold_decode = m->fold;
    info->prenorm_decode = m->prenorm;
}

double llama_cuda_copy_bandwidth(void) {
    const size_t n = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = -1;
    if (cu_check(cudaMalloc(&a, n), "bandwidth probe") || cu_check(cudaMalloc(&b, n), "bandwidth probe") ||
        cu_check(cudaMemset(a, 0x5a, n), "bandwidth probe") || cu_check(cudaEventCreate(&e0), "events") ||
        cu_check(cudaEventCreate(&e1), "events"))
        goto done;
    for (int kind = 0; kind < 2; kind++) {
        float t[10];
        for (int r = -2; r < 10; r++) {
            cudaEventRecord(e0, 0);
            int rc = kind ? cuk_copy(b, a, (int64_t)n, 0) : cu_check(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0), "copy");
            cudaEventRecord(e1, 0);
            if (rc || cu_check(cudaEventSynchronize(e1), "bandwidth probe")) goto done;
            if (r >= 0) cudaEventElapsedTime(&t[r], e0, e1);
        }
        for (int i = 1; i < 10; i++) /* insertion sort for the median */
            for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
                float x = t[j];
                t[j] = t[j - 1], t[j - 1] = x;
            }
        double bw = 2.0 * (double)n / (0.5 * (t[4] + t[5]) * 1e-3);
        if (bw > best) best = bw;
    }
done:
    cudaFree(a), cudaFree(b);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return best;
}
