/* CUDA kernels for GPTQ inference, callable from C.
 *
 * Quantized weights keep the CPU's qk layout (kernels/cpu/qtypes.h) byte for byte: a row's
 * 64-byte blocks are contiguous, so 4 threads read one block as four 16-byte vectors and a
 * warp streams 512 contiguous bytes of a row per load, fully coalesced.  The layers of the
 * tensor-core GEMV take the same blocks in 16-row tiles instead (cuq_upload, below).  Lane w of a block
 * quarter q holds, for every code index k, input 32·j + 16·(k&1) + 4q + w of the block's
 * chunk j = k/2, so each (k, quarter) meets four consecutive activations: one float4.
 *
 * Products, y (T, out) = x (T, in) · Wᵀ, fp32 activations and outputs:
 *   T <= 8   cuq_gemv: one pass over the packed codes for all T tokens (decode, batch 1..8),
 *            in fp16 arithmetic for 2/4/8 bits or exact fp32 (cuq_gemv_set_fp32).
 *   T > 8    cuq_gemm: the layer dequantized to fp16 in kernel order (cuq_dequant_f16), the
 *            activations permuted and rounded to fp16, and a cuBLAS fp16 GEMM with fp32
 *            accumulation.
 * act-order: activations are permuted once per call into kernel order (x_perm[p] = x[perm[p]],
 * 0 at padding); identity layers read x as it is.
 * Dense fp16 weights (the unquantized baseline, lm_head, embeddings): cuh_gemv for T <= 8,
 * cuBLAS above.
 *
 * Every launcher checks its launch and returns 0, or -1 with an error (core/error.h). */
#ifndef GPTQ_KERNELS_CUDA_CUQ_H
#define GPTQ_KERNELS_CUDA_CUQ_H

#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/cpu/qtypes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUQ_MAX_GEMV_T 8 /* most tokens one GEMV call takes */

/* A quantized Linear on the device (all pointers are device memory, owned). */
typedef struct {
    int64_t out, in;      /* logical shape */
    int64_t in_pad;       /* positions in kernel order (qk_layer.in_pad) */
    int64_t nchunks;      /* in_pad / 32 */
    int64_t groups;
    int64_t row_blocks;   /* 64-byte blocks per row */
    int bits;             /* 2, 3, 4, 8 */
    int zero_base;        /* real zero = zeros[] + zero_base */
    int block_group;      /* every 64-byte block lies in one group (the tensor-core GEMV's condition) */
    int tiled;            /* qw in the 16-row tile layout (below) instead of the qk layout */
    uint32_t *qw;         /* qk: (out, row_blocks, 16) the qk blocks; tiled: (ceil(out/16), row_blocks, 16 rows, 16) */
    uint16_t *scales;     /* (out, groups) fp16 */
    uint8_t *zeros;       /* (out, groups) */
    int32_t *chunk_group; /* (nchunks) group of each chunk */
    int32_t *perm;        /* (in_pad) input at each position, -1 = padding; NULL = identity */
    uint8_t *meta;        /* tiled 4-bit layers whose blocks lie in one group: per tile, 48 B per block (8 x 8
                             blocks at least) of the scales (half2 of rows g, g + 8 for g < 8) and zero-point
                             pairs, grouped by the GEMV warps' steps (frag_mma.cuh: meta_scale_at), for
                             cuq_gemv_frag; NULL otherwise */
} cuq_layer;

/* Copies a host qk layer to the device.  -1 + error on allocation or copy failure.
 * The codes keep the qk layout, or take the 16-row tile layout: the same 64-byte blocks,
 * reordered so that block b of the 16 rows of a tile are adjacent (tile, b, row in tile);
 * the rows of the last tile past `out` are zero.  The tensor-core GEMV's lanes (rows g
 * and g + 8, quarter t) then read two 512-byte contiguous runs per step instead of 16 runs
 * of 64 bytes, and a tile's codes are one contiguous range (which the GEMV asks L2 to
 * prefetch whole).  Every kernel reads both layouts. */
int cuq_upload(const qk_layer *L, cuq_layer *d);
/* Which layers cuq_upload tiles from now on: 0 none, 1 all, 2 (the default) those the
 * tensor-core GEMV takes (4-bit, every block in one group).  Default from GPTQ_CUDA_TILED
 * (0 or 1), else 2. */
void cuq_set_tiled(int mode);
void cuq_free(cuq_layer *d);
/* Bytes one GEMV reads from the weights (codes, scales, zeros). */
int64_t cuq_stream_bytes(const cuq_layer *d);

/* y (T, out) = x (T, in) · Wᵀ for 1 <= T <= CUQ_MAX_GEMV_T.  xbuf: device scratch of
 * T·in_pad floats, used when the layer permutes its inputs (may be NULL otherwise). */
int cuq_gemv(const cuq_layer *L, float *y, const float *x, float *xbuf, int T, cudaStream_t s);

/* cuq_gemv's kernels: for 2, 4 and 8 bits by default an fp16 kernel (half2 weights and
 * activations, sums of four products in fp16, then fp32: errors of fp16 rounding, ~1e-3,
 * like the cuBLAS path); 3-bit, or every width after cuq_gemv_set_fp32(1) or with
 * GPTQ_CUDA_GEMV=fp32 in the environment, an fp32 kernel exact up to fp32 rounding. */
void cuq_gemv_set_fp32(int on);
/* 4-bit layers whose 64-byte blocks each lie in one group (group size a multiple of 128,
 * act-order included) take a tensor-core kernel in fp16 mode unless cuq_gemv_set_mma(0)
 * or GPTQ_CUDA_GEMV=half2. */
void cuq_gemv_set_mma(int on);

/* Tuning of the tensor-core GEMV, for benchmarks: depth = steps of codes each warp keeps in
 * flight in registers (1, 2 or 4; default 2, or GPTQ_CUDA_MMA_DEPTH); act_smem = 0 keeps
 * the activations in global memory instead of staging them in shared memory (default 1,
 * or GPTQ_CUDA_MMA_XS); min_blocks = thread blocks per SM the registers must allow (1, 3 or
 * 4; default 3, or GPTQ_CUDA_MMA_MINB); tma = 1 brings the first 32 blocks of each row
 * into shared memory by bulk copies (depth 2 only; default 0, or GPTQ_CUDA_MMA_TMA);
 * warps = warps per thread block (1..8; default 8, or GPTQ_CUDA_MMA_WARPS).  depth,
 * min_blocks or warps below 1, act_smem or tma below 0 leave that setting as it is. */
void cuq_gemv_set_depth(int depth, int act_smem, int min_blocks, int tma, int warps);
/* With cuq_gemv_set_prefetch(1) or GPTQ_CUDA_MMA_PF=1 the tensor-core GEMV asks L2 for
 * each tile's codes at its start (cp.async.bulk.prefetch.L2; off by default: slower on the
 * H100, docs/PERFORMANCE.md). */
void cuq_gemv_set_prefetch(int on);
/* y (T, out) = (silu(g) · u) (T, in) · Wᵀ: SwiGLU fused into the GEMV's activation loads
 * where the tensor-core kernel takes the layer (no act-order); otherwise g is overwritten
 * with silu(g) · u first (cuk_silu_mul) and cuq_gemv runs. */
int cuq_gemv_silu(const cuq_layer *L, float *y, float *g, const float *u, float *xbuf, int T, cudaStream_t s);
/* The fp16 GEMV's steps of weights in flight per lane (1, 2, 4; default 4 or
 * GPTQ_CUDA_HGEMV_DEPTH; 4 applies up to T = 2, 2 up to T = 4). */
void cuh_gemv_set_depth(int depth);
/* Programmatic dependent launch of the GEMVs and the forward pass's kernels (on by
 * default on sm_90; GPTQ_CUDA_PDL=0 or cuk_set_pdl(0) turns it off). */
void cuk_set_pdl(int on);

/* y[k] = x · W_kᵀ for n <= 3 layers that read the same x (q/k/v, gate/up): one launch when
 * all take the tensor-core kernel with the same input width, else one cuq_gemv each.
 * xbuf needs n·T·in_pad floats when the layers permute their inputs. */
int cuq_gemv_multi(const cuq_layer *const *L, float *const *y, int n, const float *x, float *xbuf, int T, cudaStream_t s);

/* The fragment-order GEMV (qgemv_frag.cu) for tiled 4-bit layers whose blocks each lie in
 * one group (cuq_frag_ok).  Its activations come as fp16 in "fragment order": xf (T,
 * in_pad / 128, 4, 16) 32-bit words, word (k, b, t, 4p + w) = half2(x[k][i], x[k][i + 64]) for
 * i = 128 b + 32 (p / 2) + 16 (p % 2) + 4 t + w (kernel order: act-order layers take their
 * permuted input), cuq_frag_words(in_pad, T) words in all.  cuk_frag16 writes them from
 * fp32 x (or silu(x) · x2 when x2 is non-NULL), permuted by perm when non-NULL. */
int cuq_frag_ok(const cuq_layer *L);
int64_t cuq_frag_words(int64_t in_pad, int T);
int cuk_frag16(uint32_t *xf, const float *x, const float *x2, const int32_t *perm, int64_t in, int64_t in_pad, int T,
               cudaStream_t s);
/* ys[k] = x · W_kᵀ for n <= 3 layers of the same in_pad reading the same fragments (one launch). */
int cuq_gemv_frag(const cuq_layer *const *L, float *const *y, int n, const uint32_t *xf, int T, cudaStream_t s);
/* SwiGLU: hf = silu(x · gateᵀ) · (x · upᵀ) in fragment order (an input of gate->out features,
 * a multiple of 128), and as fp32 (T, out) into h when h is non-NULL. */
int cuq_gemv_swiglu_frag(const cuq_layer *gate, const cuq_layer *up, uint32_t *hf, float *h, const uint32_t *xf, int T,
                         cudaStream_t s);
/* The same with the input's RMSNorm folded in (nrm non-NULL, one token): every thread block
 * computes nrm->w · x / rms(x) of the fp32 residual nrm->x itself, as fragments in shared
 * memory (xf unused; no norm kernel before the GEMV); accumulate: y += x · Wᵀ (the
 * residual add of down_proj) instead of y = (not for the pair). */
typedef struct {
    const float *x, *w; /* (in) residual, norm weights */
    float eps;
    int deferred; /* the fragments are w · x · *scale; the sums are scaled by 1 / rms(x) /
                     *scale after the GEMV (gate and up before the SiLU), so no block waits for
                     Σx² before its first multiply */
    const float *scale; /* deferred: an estimate of 1 / rms(x) (the previous norm's, from
                           inv_out or rms_out), keeping the fp16 inputs near 1; NULL: 1 */
    float *inv_out;     /* deferred, non-NULL: 1 / rms(x) is stored there */
} cuq_frag_norm;
int cuq_gemv_frag_ex(const cuq_layer *const *L, float *const *y, int n, const uint32_t *xf, int T, const cuq_frag_norm *nrm,
                     int accumulate, cudaStream_t s);
/* The thread blocks of one-token cuq_gemv_swiglu_frag_ex (folded: with a norm fold) on this
 * GPU; block i's first tile is tile i (the persistent form's later units follow by the grid). */
int cuq_swiglu_frag_grid(const cuq_layer *gate, int folded);
int cuq_gemv_swiglu_frag_ex(const cuq_layer *gate, const cuq_layer *up, uint32_t *hf, float *h, const uint32_t *xf, int T,
                            const cuq_frag_norm *nrm, cudaStream_t s);
/* The RMSNorm deferred instead (one token; cuq_gemv_frag_opt, zero fields = off):
 *  rms_ssq   the input fragments are x · w, not normalized: scale the products by
 *            1 / sqrt(Σ rms_ssq[0 .. rms_n) / in + rms_eps) (every block sums the partials
 *            in the same order, while its codes stream);
 *  pre_*     with accumulate, one layer: after y += the products, also write the next
 *            layer's input from the new y: pre_xf = fp16(y · pre_w) in fragment order and
 *            pre_ssq[tile] = Σ y² over each 16-row tile (its rms_ssq, rms_n = tiles).
 * So down_proj hands the next q/k/v its input with no norm kernel between them. */
typedef struct {
    const cuq_frag_norm *norm; /* the fold, as cuq_gemv_frag_ex */
    int accumulate;
    const float *rms_ssq;
    int rms_n;
    float rms_eps;
    const float *rms_scale; /* the input fragments were made times *rms_scale (NULL: 1) */
    float *rms_out;         /* non-NULL: 1 / rms stored there */
    const float *pre_w;
    uint32_t *pre_xf;
    float *pre_ssq;
    const float *pre_scale; /* pre_xf = fp16(y · pre_w · *pre_scale) (NULL: 1): an estimate of the
                               next norm's 1 / rms, so that fp16 holds values near 1 */
} cuq_frag_opts;
int cuq_gemv_frag_opt(const cuq_layer *const *L, float *const *y, int n, const uint32_t *xf, int T, const cuq_frag_opts *o,
                      cudaStream_t s);
/* Whether decode takes the fragment-order GEMV where layers allow: on unless
 * cuq_gemv_set_frag(0), GPTQ_CUDA_FRAG=0, or the fp32 / half2 kernels were chosen
 * (cuq_gemv_set_fp32, cuq_gemv_set_mma, GPTQ_CUDA_GEMV). */
int cuq_frag_enabled(void);
void cuq_gemv_set_frag(int on);
/* Builds d->meta from d's scales, zero points and chunk groups (tiled 4-bit layers). */
int cuq_build_meta(cuq_layer *d);
/* Ring depth (1, 2, 4) and warps per block (1..16) of cuq_gemv_frag, for benchmarks
 * (GPTQ_CUDA_FRAG_DEPTH / _WARPS); 0 = the default (depth 1, warps by grid size), values
 * below 0 or above 16 warps leave the setting as it is. */
void cuq_frag_set(int depth, int warps);
/* The persistent form of cuq_gemv_frag / cuq_gemv_swiglu_frag for launches of more than one
 * wave of blocks (several tiles per block, 8 warps, one wave; taken at the default depth and
 * warps only): 1 on (the default), 0 off, -1 GPTQ_CUDA_FRAG_MULTI again.  slots > 0 stands
 * in for the GPU's resident blocks (tests: small layers then take the form too). */
void cuq_frag_set_multi(int on, int slots);
/* How many launches took the persistent form so far. */
long cuq_frag_multi_launches(void);
/* Launches of several layers (q/k/v) in the persistent form with two tiles per warp step
 * (as the gate/up pair, each written as its own output): 0 no, 1 in ceil(units / nt)
 * blocks, 2 (the default) on every resident block slot, -1 GPTQ_CUDA_FRAG_DUAL again (7B
 * decode on the H100: 2.034 / 2.047 ms per token with 2, 2.060 / 2.059 with 0, 2.067 /
 * 2.068 with 1). */
void cuq_frag_set_dual(int mode);

/* Binds a block-timeline trace buffer (cu_common.cuh: TraceRec) to the instrumented decode
 * kernels, NULL unbinds (GPTQ_CUDA_TRACE in llama_cuda.c). */
void cuk_trace_bind(void *buf);

/* W in kernel order as fp16: w16 (out, in_pad), position p holding input perm[p]. */
int cuq_dequant_f16(const cuq_layer *L, uint16_t *w16, cudaStream_t s);

/* x16 (T, in_pad) fp16 = x (T, in) permuted into kernel order (perm NULL: in_pad == in). */
int cuq_acts_f16(const int32_t *perm, int64_t in, int64_t in_pad, uint16_t *x16, const float *x, int T, cudaStream_t s);

/* y (T, out) = x (T, in) · Wᵀ for dense fp16 W (out, in), 1 <= T <= CUQ_MAX_GEMV_T. */
int cuh_gemv(const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, int T, cudaStream_t s);
/* The same for one token of RMSNorm(x) · nw (the norm made inside: the lm_head after the
 * last layer without a norm kernel). */
int cuh_gemv_norm(const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, const float *nw, float eps,
                  cudaStream_t s);

/* y (T, out) = x (T, in) · Wᵀ for any T through cuBLAS (fp16 operands, fp32 accumulation):
 * the layer is dequantized into w16 (out·in_pad halves of scratch) and x converted into x16
 * (T·in_pad halves).  Set the handle's stream to s. */
int cuq_gemm(cublasHandle_t h, const cuq_layer *L, float *y, const float *x, int T, uint16_t *w16, uint16_t *x16,
             cudaStream_t s);
/* The same for dense fp16 W (out, in); x16 holds T·in halves of scratch. */
int cuh_gemm(cublasHandle_t h, const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, int T, uint16_t *x16,
             cudaStream_t s);

/* dst[i] = fp16(src[i]) for n elements. */
int cuk_f32_to_f16(uint16_t *dst, const float *src, int64_t n, cudaStream_t s);

/* Device buffers of random content, for benchmarks of real shapes without real weights:
 * n random 32-bit words; n fp16 values uniform in [-scale/2, scale/2]. */
int cuk_fill_random(uint32_t *p, int64_t n, uint64_t seed, cudaStream_t s);
int cuk_fill_f16(uint16_t *p, int64_t n, uint64_t seed, float scale, cudaStream_t s);

/* dst = src, bytes a multiple of 16, through a streaming copy kernel (the bandwidth probe
 * beside cudaMemcpy's device-to-device copy). */
int cuk_copy(void *dst, const void *src, int64_t bytes, cudaStream_t s);

/* A CUDA error as a library error: "<what>: <CUDA's message>", returns -1 (0 if ok). */
int cu_check(cudaError_t e, const char *what);
/* The same for cuBLAS status codes. */
int cublas_check(cublasStatus_t st, const char *what);

#ifdef __cplusplus
}
#endif

#endif
