/* The non-GEMM kernels of the GPU forward pass (kernels/cuda/model.cu), callable from C.
 * Shapes as in model/llama.h: x (n, dim) fp32 rows; KV cache rows (max_seq, n_kv·hd) fp16
 * of one layer; pos0 points to device memory holding the position of the first token.
 * Each returns 0, or -1 with an error after a failed launch. */
#ifndef GPTQ_KERNELS_CUDA_MODEL_KERNELS_H
#define GPTQ_KERNELS_CUDA_MODEL_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "kernels/cuda/cuq.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x (n, dim) = emb[ids[t]] (fp16 table (vocab, dim)); ids in device memory. */
int cuk_embed(const uint16_t *emb, const int *ids, float *x, int n, int dim, cudaStream_t s);
/* out (n, dim) = x / rms(x) · w; out may be x.  frag non-NULL (dim a multiple of 128, n <= 8):
 * out also in the fp16 fragment order of cuq_gemv_frag (cuq.h). */
int cuk_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps, uint32_t *frag, cudaStream_t s);
/* x (n, dim) = emb[ids[t]], then out = x / rms(x) · w (frag as above): the embedding and the
 * first norm in one kernel; inv_out (may be NULL): 1 / rms of each token. */
int cuk_embed_rmsnorm(const uint16_t *emb, const int *ids, float *x, float *out, const float *w, int n, int dim, float eps,
                      uint32_t *frag, float *inv_out, cudaStream_t s);
/* x += y (n, dim), then out = x / rms(x) · w: a residual add fused with the next norm (frag as above). */
int cuk_add_rmsnorm(float *out, float *x, const float *y, const float *w, int n, int dim, float eps, uint32_t *frag,
                    cudaStream_t s);
/* Rotary embedding (rotate_half) of q (n, n_heads·hd) in place and of k (n, n_kv·hd) into the
 * cache kc at positions *pos0 + t; v (n, n_kv·hd) into vc. */
int cuk_rope_kv(float *q, const float *k, const float *v, uint16_t *kc, uint16_t *vc, const float *inv_freq,
                const int *pos0, int n, int n_heads, int n_kv, int hd, cudaStream_t s);
/* Once per process before cuk_attention with this max_seq (raises the shared-memory limit). */
int cuk_attention_setup(int max_seq);
/* out (n, n_heads·hd): causal attention of the n queries at positions *pos0 + t over cache
 * positions 0..*pos0 + t (GQA: n_heads / n_kv query heads per cache head); hd <= 256. */
int cuk_attention(const float *q, const uint16_t *kc, const uint16_t *vc, float *out, const int *pos0, int n, int max_seq,
                  int n_heads, int n_kv, int hd, cudaStream_t s);
/* RoPE + KV-cache append + attention for n <= 8 queries (decode) in one kernel: q (n,
 * n_heads·hd), k, v (n, n_kv·hd) unrotated as the projections wrote them; the rotated k and
 * v go into the cache rows *pos0 + t as cuk_rope_kv writes them, out as cuk_attention.
 * Split over blocks of 16 positions so that every SM works: part is device scratch of
 * cuk_attention_split_floats(n, max_seq, ...) floats, zeroed once before the first call
 * (it starts with counters that each call leaves at 0).  *pos0 must have been written
 * before the step's first kernel (the cache rows before it are read early, overlapping
 * the previous kernel).  out_frag non-NULL: out also in fragment order (cuq.h). */
int cuk_rope_attention_decode(const float *q, const float *k, const float *v, uint16_t *kc, uint16_t *vc,
                              const float *inv_freq, float *out, uint32_t *out_frag, float *part, const int *pos0, int n,
                              int max_seq, int n_heads, int n_kv, int hd, cudaStream_t s);
int64_t cuk_attention_split_floats(int n, int max_seq, int n_heads, int hd);
/* Decode of one token, head_dim 128: RoPE + KV-cache append + attention (as
 * cuk_rope_attention_decode), then x += o_proj(attention output), in one kernel
 * (kernels/cuda/attn_o.cu; a thread block cluster per query head).  o: o_proj, a layer the
 * fragment-order GEMV takes, without permutation, n_heads blocks of 128 inputs.  The adds
 * into x are atomic (32 heads per row).  cuk_attention_o_ok: whether it applies (a context
 * of max_seq <= 1024, and GPTQ_CUDA_ATT_O=0 / cuk_attention_o_set(0, 0) have not turned it
 * off); chunk > 0 sets the cache rows a block takes at a time (tests), 0 = by max_seq.
 * inv_freq_host: RoPE's 64 inverse frequencies in host memory (passed by value: a block
 * needs them before its dependency wait, where a global load queued behind its own cache
 * rows' requests).
 * next_gate, next_up (may be NULL): the gate/up pair that follows (cuq_gemv_swiglu_frag_ex
 * with its norm folded); 48 more blocks then ask the first codes of its blocks into L2
 * while the heads compute (off: GPTQ_CUDA_ATT_PF=0 / cuk_attention_o_set_prefetch(0); 1
 * on, -1 the variable again). */
int cuk_attention_o_ok(const cuq_layer *o, int n_heads, int n_kv, int hd, int max_seq);
int cuk_attention_o_decode(const float *q, const float *k, const float *v, uint16_t *kc, uint16_t *vc, const float *inv_freq_host,
                           const int *pos0, const cuq_layer *o, float *x, int max_seq, int n_heads, int n_kv, int hd,
                           const cuq_layer *next_gate, const cuq_layer *next_up, cudaStream_t s);
void cuk_attention_o_set(int on, int chunk);
void cuk_attention_o_set_prefetch(int on);
/* g = silu(g) · u, n elements. */
int cuk_silu_mul(float *g, const float *u, int64_t n, cudaStream_t s);
/* x += y, n elements. */
int cuk_add(float *x, const float *y, int64_t n, cudaStream_t s);
/* y (n, out) += b (out). */
int cuk_bias(float *y, const float *b, int64_t out, int n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
