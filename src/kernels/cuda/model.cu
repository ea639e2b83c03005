// The non-GEMM kernels of the Llama forward pass on the GPU (model/cuda/llama_cuda.c):
// embedding, RMSNorm, RoPE + KV-cache append, attention, SwiGLU, residual add.
// Positions come from device memory (*pos0), so a captured decode step replays at any
// position.  fp32 activations, fp16 KV cache and embeddings; the arithmetic follows the
// CPU forward (model/llama.c) operation for operation where it can.
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/model_kernels.h"

namespace {

// Sum (or max) over a block of up to 1024 threads; every thread gets the result.
template <bool MAX>
__device__ float block_reduce(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();  // red may still be read from a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (MAX ? -INFINITY : 0.f);
    return MAX ? warp_max(v) : warp_sum(v);
}

__global__ void embed_kernel(const __half *__restrict__ emb, const int *__restrict__ ids, float *__restrict__ x, int dim) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x;
    const __half *row = emb + (int64_t)ids[t] * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) x[(int64_t)t * dim + i] = __half2float(row[i]);
}

// RMSNorm of one token per block.  Where dim is a multiple of 4 and at most 4 float4 per
// thread, each thread loads its float4s at once and keeps them in registers, so the block
// pays one round trip for its loads (a strided loop whose stores may alias the next loads
// pays one per iteration: ncu measured 6.8 us for the 4096-wide add + norm that way); the
// norm weights are loaded before pdl_wait().  Other widths take the plain loops.
constexpr int kNormVec = 4;

// emb non-NULL (not ADD): x is first the embedding row emb[ids[t]] (the embedding kernel
// folded in; x written); inv_out non-NULL: 1 / rms of token t to inv_out[t] (the next
// deferred norm's input scale, llama_cuda.c).
template <bool ADD>
__global__ void __launch_bounds__(1024) rmsnorm_kernel(float *out, float *x, const float *__restrict__ y, const float *__restrict__ w, int dim,
                               float eps, __half *frag, const __half *__restrict__ emb, const int *__restrict__ ids,
                               float *inv_out) {
    BlockTrace bt = trace_begin();
    pdl_trigger();
    __shared__ float red[32];
    const int64_t t = blockIdx.x;
    float *xt = x + t * dim;
    float *ot = out + t * dim;
    const int nv = dim / 4;
    const bool vec = dim % 4 == 0 && nv <= kNormVec * (int)blockDim.x;
    float4 wv[kNormVec];
    if (vec) {
#pragma unroll
        for (int k = 0; k < kNormVec; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < nv) wv[k] = reinterpret_cast<const float4 *>(w)[i];
        }
    }
    pdl_wait();
    trace_wait(bt);
    const __half *er = emb ? emb + (int64_t)ids[t] * dim : nullptr;
    if (vec) {
        float4 v[kNormVec];
        float ss = 0.f;
#pragma unroll
        for (int k = 0; k < kNormVec; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < nv) {
                if (er) {
                    const uint2 h = reinterpret_cast<const uint2 *>(er)[i];
                    const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&h.x)),
                                 b = __half22float2(*reinterpret_cast<const __half2 *>(&h.y));
                    v[k] = make_float4(a.x, a.y, b.x, b.y);
                    reinterpret_cast<float4 *>(xt)[i] = v[k];
                } else {
                    v[k] = reinterpret_cast<const float4 *>(xt)[i];
                }
                if (ADD) {
                    const float4 b = reinterpret_cast<const float4 *>(y + t * dim)[i];
                    v[k].x += b.x, v[k].y += b.y, v[k].z += b.z, v[k].w += b.w;
                }
                ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
            }
        }
        if (ADD) {
#pragma unroll
            for (int k = 0; k < kNormVec; k++) {
                const int i = threadIdx.x + k * blockDim.x;
                if (i < nv) reinterpret_cast<float4 *>(xt)[i] = v[k];
            }
        }
        ss = block_reduce<false>(ss, red);  // its barriers also order every read of x before the writes of out
        const float inv = 1.0f / sqrtf(ss / dim + eps);
        if (inv_out && threadIdx.x == 0) inv_out[t] = inv;
#pragma unroll
        for (int k = 0; k < kNormVec; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < nv) {
                const float4 o = make_float4(wv[k].x * (v[k].x * inv), wv[k].y * (v[k].y * inv), wv[k].z * (v[k].z * inv),
                                             wv[k].w * (v[k].w * inv));
                reinterpret_cast<float4 *>(ot)[i] = o;
                if (frag) {  // the 4 inputs are consecutive words of one half: 2 halves apart
                    __half *f = frag + cuq_frag_half(t, 4 * i, dim >> 7);
                    f[0] = __float2half_rn(o.x), f[2] = __float2half_rn(o.y), f[4] = __float2half_rn(o.z),
                    f[6] = __float2half_rn(o.w);
                }
            }
        }
        trace_end(bt, 1);
        return;
    }
    float ss = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = er ? __half2float(er[i]) : ADD ? xt[i] + y[t * dim + i] : xt[i];
        if (ADD || er) xt[i] = v;
        ss += v * v;
    }
    ss = block_reduce<false>(ss, red);
    const float inv = 1.0f / sqrtf(ss / dim + eps);
    if (inv_out && threadIdx.x == 0) inv_out[t] = inv;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        ot[i] = w[i] * (xt[i] * inv);
        if (frag) frag[cuq_frag_half(t, i, dim >> 7)] = __float2half_rn(ot[i]);
    }
}

// One block per token: rotates the q heads in place, rotates k and writes k and v (fp16)
// into the cache rows at the token's position.
__global__ void rope_kv_kernel(float *q, const float *k, const float *v, __half *kc, __half *vc,
                               const float *__restrict__ inv_freq, const int *pos0, int n_heads, int n_kv, int hd) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, half = hd / 2;
    const int pos = *pos0 + t;
    const int qd = n_heads * hd, kvd = n_kv * hd;
    // blockIdx.y splits the (head, pair) items of a token over gridDim.y blocks
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < (n_heads + n_kv) * half; i += blockDim.x * gridDim.y) {
        const int h = i / half, j = i - h * half;
        const float a = (float)pos * inv_freq[j];
        const float c = cosf(a), s = sinf(a);
        if (h < n_heads) {
            float *p = q + (int64_t)t * qd + h * hd;
            const float x0 = p[j], x1 = p[j + half];
            p[j] = x0 * c - x1 * s;
            p[j + half] = x1 * c + x0 * s;
        } else {
            const int kh = h - n_heads;
            const float *p = k + (int64_t)t * kvd + kh * hd;
            const float x0 = p[j], x1 = p[j + half];
            __half *dst = kc + (int64_t)pos * kvd + kh * hd;
            dst[j] = __float2half_rn(x0 * c - x1 * s);
            dst[j + half] = __float2half_rn(x1 * c + x0 * s);
        }
    }
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < kvd; i += blockDim.x * gridDim.y)
        vc[(int64_t)pos * kvd + i] = __float2half_rn(v[(int64_t)t * kvd + i]);
}

constexpr int kAttWarps = 8;
constexpr int kMaxHeadDim = 256;

// One block per (head, token): causal attention of query t (position *pos0 + t) over
// cache positions 0..pos.  Scores live in shared memory (max_seq floats).
__global__ void __launch_bounds__(kAttWarps * 32)
    attention_kernel(const float *__restrict__ q, const __half *__restrict__ kc, const __half *__restrict__ vc,
                     float *__restrict__ out, const int *pos0, int n_heads, int n_kv, int hd, float scale) {
    pdl_trigger();
    pdl_wait();
    extern __shared__ float sc[];  // (len) scores
    __shared__ float qs[kMaxHeadDim];
    __shared__ float part[kAttWarps][kMaxHeadDim];
    __shared__ float red[32];
    const int h = blockIdx.x, t = blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int len = *pos0 + t + 1;
    const int kvh = h / (n_heads / n_kv), kvd = n_kv * hd, h2 = hd / 2;
    const float *qv = q + ((int64_t)t * n_heads + h) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = qv[i];
    __syncthreads();
    // scores: a warp per position, lanes over the head's dimensions (half2)
    float mx = -INFINITY;
    for (int p = warp; p < len; p += kAttWarps) {
        const __half2 *kr = reinterpret_cast<const __half2 *>(kc + (int64_t)p * kvd + kvh * hd);
        float d = 0.f;
        for (int i = lane; i < h2; i += 32) {
            const float2 kf = __half22float2(kr[i]);
            d = fmaf(qs[2 * i], kf.x, d);
            d = fmaf(qs[2 * i + 1], kf.y, d);
        }
        d = warp_sum(d) * scale;
        if (lane == 0) sc[p] = d;
        mx = fmaxf(mx, d);
    }
    mx = block_reduce<true>(mx, red);
    float sum = 0.f;
    for (int p = threadIdx.x; p < len; p += blockDim.x) {
        const float e = expf(sc[p] - mx);
        sc[p] = e;
        sum += e;
    }
    sum = block_reduce<false>(sum, red);  // its barriers also publish sc[]
    const float inv = 1.0f / sum;
    // weighted values: a warp per position, lanes over dimensions, then the warps' sums
    float2 acc[kMaxHeadDim / 64];
#pragma unroll
    for (int k = 0; k < kMaxHeadDim / 64; k++) acc[k] = make_float2(0.f, 0.f);
    for (int p = warp; p < len; p += kAttWarps) {
        const __half2 *vr = reinterpret_cast<const __half2 *>(vc + (int64_t)p * kvd + kvh * hd);
        const float wgt = sc[p];
#pragma unroll
        for (int k = 0; k < kMaxHeadDim / 64; k++) {
            const int i = lane + 32 * k;
            if (i < h2) {
                const float2 vf = __half22float2(vr[i]);
                acc[k].x = fmaf(wgt, vf.x, acc[k].x);
                acc[k].y = fmaf(wgt, vf.y, acc[k].y);
            }
        }
    }
#pragma unroll
    for (int k = 0; k < kMaxHeadDim / 64; k++) {
        const int i = lane + 32 * k;
        if (i < h2) part[warp][2 * i] = acc[k].x, part[warp][2 * i + 1] = acc[k].y;
    }
    __syncthreads();
    float *o = out + ((int64_t)t * n_heads + h) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float s = 0.f;
#pragma unroll
        for (int w = 0; w < kAttWarps; w++) s += part[w][i];
        o[i] = s * inv;
    }
}

constexpr int kSplitWarps = 4;
// Positions per split block: kSplitWarps · PW (template), 4 per warp by default, so every
// block is short (each position's loads wait a full latency).  7B decode at position ~576
// (an early version): 64 -> 3.82 ms/token, 16 -> 3.42, 8 -> 3.54.  GPTQ_CUDA_ATT_PW = 2 or 8
// selects the others for benchmarks; the scratch has room for the shortest (8).
constexpr int kDefaultPW = 4, kMinSplitLen = 8;

// Decode attention, split over positions (few queries would leave most SMs idle):
// block (head, token, split) handles positions [split·16, split·16 + 16) ∩ [0, len) and
// writes its unnormalized output to part (n, n_heads, splits, hd) and its max score and
// sum of exponentials to a second array (n, n_heads, splits, 2).  The cache rows of earlier steps (positions < *pos0) do
// not depend on the running step, so they are loaded into registers before pdl_wait();
// *pos0 itself was copied before the step's first kernel started.  The last block to
// finish for a (token, head) (a counter per pair at the start of the scratch, left at 0)
// merges the splits: no separate combine kernel.  RoPE is fused in: q and this step's k, v
// come unrotated in fp32 (q_in, k_in, v_in); each block rotates its query and the k rows of
// this step's positions itself (rounded to fp16 as the cache holds them), and the blocks
// of the last token and of the first query head of each cache head write those k, v rows
// into the cache for the later steps.  The angles of the query are computed before the wait.
// HW (template): half2 per lane of a cache row, hd <= 64·HW (2 for head_dim 128, 4 up to
// 256): registers for the rows of the largest head only where needed (72 -> 56 at HW = 2,
// so that all blocks of a 7B step are resident at once)
constexpr int kMaxDecodeTok = 8;                  // tokens per decode call (counters)

template <int HW, int PW>
__global__ void __launch_bounds__(kSplitWarps * 32, HW == 2 && PW <= 4 ? 10 : 1)
    attention_split_kernel(const float *__restrict__ q, const float *__restrict__ k_in, const float *__restrict__ v_in,
                           __half *__restrict__ kc, __half *__restrict__ vc, const float *__restrict__ inv_freq,
                           float *__restrict__ scratch, float *__restrict__ out, const int *pos0, int n_heads, int n_kv,
                           int hd, float scale, __half *out_frag) {
    BlockTrace bt = trace_begin();
    pdl_trigger();
    extern __shared__ float wgt[];  // (2, splits): the merge's weights and sums of the splits
    __shared__ float qs[kMaxHeadDim];
    __shared__ float qc[kMaxHeadDim / 2], qsn[kMaxHeadDim / 2];  // the query's cos, sin per pair
    constexpr int kSplitLen = kSplitWarps * PW, kSplitPW = PW;
    __shared__ float sc[kSplitLen];
    __shared__ float acc_s[kSplitWarps][kMaxHeadDim];
    __shared__ float red[32];
    __shared__ bool last;
    const int h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z, splits = gridDim.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int pos = *pos0, len = pos + t + 1, p0 = sp * kSplitLen, p1 = min(len, p0 + kSplitLen);
    const int kvh = h / (n_heads / n_kv), kvd = n_kv * hd, h2 = hd / 2;
    const bool writer = h % (n_heads / n_kv) == 0 && t == (int)gridDim.y - 1;  // of this step's cache rows
    for (int j = threadIdx.x; j < h2; j += blockDim.x) {
        const float a = (float)(pos + t) * inv_freq[j];
        qc[j] = cosf(a), qsn[j] = sinf(a);
    }
    // scratch: counters (kMaxDecodeTok, n_heads), then the splits' unnormalized outputs
    // (kMaxDecodeTok, n_heads, splits, hd), then their max scores and sums (.., splits, 2)
    unsigned *count = reinterpret_cast<unsigned *>(scratch) + t * n_heads + h;
    const int64_t th = (int64_t)t * n_heads + h;
    float *part = scratch + kMaxDecodeTok * n_heads;
    float *ml_base = part + (int64_t)kMaxDecodeTok * n_heads * splits * hd;
    float *dst = part + (th * splits + sp) * hd, *dml = ml_base + (th * splits + sp) * 2;
    // warp w's positions p0 + w + 4j: rows of earlier steps now, the others after the wait
    __half2 kr[kSplitPW][HW], vr[kSplitPW][HW];
#pragma unroll
    for (int j = 0; j < kSplitPW; j++) {
        const int p = p0 + warp + j * kSplitWarps;
#pragma unroll
        for (int k = 0; k < HW; k++) {
            const int i = lane + 32 * k;
            kr[j][k] = vr[j][k] = __float2half2_rn(0.f);
            if (p < p1 && p < pos && i < h2) {
                kr[j][k] = reinterpret_cast<const __half2 *>(kc + (int64_t)p * kvd + kvh * hd)[i];
                vr[j][k] = reinterpret_cast<const __half2 *>(vc + (int64_t)p * kvd + kvh * hd)[i];
            }
        }
    }
    pdl_wait();
    trace_wait(bt);
    if (p0 < len) {
        // this step's positions: k rotated here (as rope_kv_kernel does) and rounded to fp16
#pragma unroll
        for (int j = 0; j < kSplitPW; j++) {
            const int p = p0 + warp + j * kSplitWarps;
#pragma unroll
            for (int k = 0; k < HW; k++) {
                const int i = lane + 32 * k;
                if (p < p1 && p >= pos && i < h2) {
                    const float *kx = k_in + (int64_t)(p - pos) * kvd + kvh * hd, *vx = v_in + (int64_t)(p - pos) * kvd + kvh * hd;
                    float r[2];
#pragma unroll
                    for (int e2 = 0; e2 < 2; e2++) {
                        const int e = 2 * i + e2, jj = e < h2 ? e : e - h2;
                        const float a = (float)p * inv_freq[jj];
                        const float c = cosf(a), sn = sinf(a);
                        if (e < h2) {
                            const float x0 = kx[e], x1 = kx[e + h2];
                            r[e2] = x0 * c - x1 * sn;
                        } else {
                            const float x0 = kx[e - h2], x1 = kx[e];
                            r[e2] = x1 * c + x0 * sn;
                        }
                    }
                    kr[j][k] = __floats2half2_rn(r[0], r[1]);
                    vr[j][k] = __floats2half2_rn(vx[2 * i], vx[2 * i + 1]);
                    if (writer) {
                        reinterpret_cast<__half2 *>(kc + (int64_t)p * kvd + kvh * hd)[i] = kr[j][k];
                        reinterpret_cast<__half2 *>(vc + (int64_t)p * kvd + kvh * hd)[i] = vr[j][k];
                    }
                }
            }
        }
        // the query, rotated
        const float *qv = q + ((int64_t)t * n_heads + h) * hd;
        for (int j = threadIdx.x; j < h2; j += blockDim.x) {
            const float x0 = qv[j], x1 = qv[j + h2], c = qc[j], sn = qsn[j];
            qs[j] = x0 * c - x1 * sn;
            qs[j + h2] = x1 * c + x0 * sn;
        }
        __syncthreads();
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kSplitPW; j++) {
            const int p = p0 + warp + j * kSplitWarps;
            if (p < p1) {
                float d = 0.f;
#pragma unroll
                for (int k = 0; k < HW; k++) {
                    const int i = lane + 32 * k;
                    if (i < h2) {
                        const float2 kf = __half22float2(kr[j][k]);
                        d = fmaf(qs[2 * i], kf.x, d);
                        d = fmaf(qs[2 * i + 1], kf.y, d);
                    }
                }
                d = warp_sum(d) * scale;
                if (lane == 0) sc[p - p0] = d;
                mx = fmaxf(mx, d);
            }
        }
        mx = block_reduce<true>(mx, red);
        float sum = 0.f;
        for (int p = p0 + (int)threadIdx.x; p < p1; p += blockDim.x) {
            const float e = expf(sc[p - p0] - mx);
            sc[p - p0] = e;
            sum += e;
        }
        sum = block_reduce<false>(sum, red);
        float2 acc[HW];
#pragma unroll
        for (int k = 0; k < HW; k++) acc[k] = make_float2(0.f, 0.f);
#pragma unroll
        for (int j = 0; j < kSplitPW; j++) {
            const int p = p0 + warp + j * kSplitWarps;
            if (p < p1) {
                const float w = sc[p - p0];
#pragma unroll
                for (int k = 0; k < HW; k++) {
                    const float2 vf = __half22float2(vr[j][k]);
                    acc[k].x = fmaf(w, vf.x, acc[k].x);
                    acc[k].y = fmaf(w, vf.y, acc[k].y);
                }
            }
        }
#pragma unroll
        for (int k = 0; k < HW; k++) {
            const int i = lane + 32 * k;
            if (i < h2) acc_s[warp][2 * i] = acc[k].x, acc_s[warp][2 * i + 1] = acc[k].y;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < hd; i += blockDim.x) {
            float v = 0.f;
#pragma unroll
            for (int w = 0; w < kSplitWarps; w++) v += acc_s[w][i];
            dst[i] = v;
        }
        if (threadIdx.x == 0) dml[0] = mx, dml[1] = sum;
    } else if (threadIdx.x == 0) {  // nothing here: an empty partial
        dml[0] = -INFINITY, dml[1] = 0.f;
    }
    // publish the partial, then count it; the last block of the (token, head) merges
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(count, 1u) == (unsigned)splits - 1;
        if (last) *count = 0;  // ready for the next call (every split has counted)
    }
    __syncthreads();
    if (!last) {
        trace_end(bt, 4);
        return;
    }
    __threadfence();
    // the merge: partials rescaled to the overall max and normalized (read through L2,
    // where the other blocks' writes are).  Latency matters here (one block per head does
    // it at the end): the max scores and sums are read once (kept in shared memory), and
    // the outputs' sums are split over groups of threads, each issuing its loads at once.
    const float *src = part + th * splits * hd, *sml = ml_base + th * splits * 2;
    float *lsum = wgt + splits;
    float M = -INFINITY;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) {
        const float2 v = __ldcg(reinterpret_cast<const float2 *>(sml) + s);
        wgt[s] = v.x, lsum[s] = v.y;
        M = fmaxf(M, v.x);
    }
    M = block_reduce<true>(M, red);  // its barriers also publish wgt[], lsum[]
    float L = 0.f;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) {
        const float w = wgt[s] > -INFINITY ? expf(wgt[s] - M) : 0.f;
        wgt[s] = w;
        L += w * lsum[s];
    }
    L = block_reduce<false>(L, red);  // and the new wgt[]
    const float inv = 1.0f / L;
    // thread = (group gi, pair pi): pairs of outputs, the splits s ≡ gi (mod G)
    const int np = hd / 2, G = (int)blockDim.x / np, pi = threadIdx.x % np, gi = threadIdx.x / np;
    float2 v = make_float2(0.f, 0.f);
    if (gi < G) {
        const float2 *s2 = reinterpret_cast<const float2 *>(src) + pi;
        int s = gi;
        for (; s + 7 * G < splits; s += 8 * G) {
            float2 a[8];
#pragma unroll
            for (int u = 0; u < 8; u++) a[u] = __ldcg(s2 + (int64_t)(s + u * G) * np);
#pragma unroll
            for (int u = 0; u < 8; u++) v.x = fmaf(a[u].x, wgt[s + u * G], v.x), v.y = fmaf(a[u].y, wgt[s + u * G], v.y);
        }
        for (; s < splits; s += G) {
            const float2 a = __ldcg(s2 + (int64_t)s * np);
            v.x = fmaf(a.x, wgt[s], v.x), v.y = fmaf(a.y, wgt[s], v.y);
        }
    }
    float2 *gsum = reinterpret_cast<float2 *>(&acc_s[0][0]);  // (G, np), free again
    if (gi < G) gsum[gi * np + pi] = v;
    __syncthreads();
    if (gi == 0) {
        for (int g2 = 1; g2 < G; g2++) v.x += gsum[g2 * np + pi].x, v.y += gsum[g2 * np + pi].y;
        const int i = 2 * pi;
        float *o = out + th * hd + i;
        o[0] = v.x * inv, o[1] = v.y * inv;
        if (out_frag) {
            out_frag[cuq_frag_half(t, h * hd + i, (n_heads * hd) >> 7)] = __float2half_rn(v.x * inv);
            out_frag[cuq_frag_half(t, h * hd + i + 1, (n_heads * hd) >> 7)] = __float2half_rn(v.y * inv);
        }
    }
    trace_end(bt, 4);
}

__global__ void silu_mul_kernel(float *g, const float *__restrict__ u, int64_t n) {
    pdl_trigger();
    pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float a = g[i];
        g[i] = a / (1.0f + expf(-a)) * u[i];
    }
}

__global__ void add_kernel(float *x, const float *__restrict__ y, int64_t n) {
    pdl_trigger();
    pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] += y[i];
}

__global__ void bias_kernel(float *y, const float *__restrict__ b, int64_t out, int64_t n) {
    pdl_trigger();
    pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) y[i] += b[i % out];
}

}  // namespace

CU_TRACE_BINDER(trace_bind_model)

extern "C" int cuk_embed(const uint16_t *emb, const int *ids, float *x, int n, int dim, cudaStream_t s) {
    return cu_check(cu_launch(embed_kernel, dim3((unsigned)n), dim3(256), 0, s, reinterpret_cast<const __half *>(emb), ids, x, dim),
                    "embedding");
}

extern "C" int cuk_add_rmsnorm(float *out, float *x, const float *y, const float *w, int n, int dim, float eps,
                               uint32_t *frag, cudaStream_t s) {
    if (frag && dim % 128) return gptq_fail("rmsnorm: fragment order needs a width that is a multiple of 128, not %d", dim);
    return cu_check(cu_launch(rmsnorm_kernel<true>, dim3((unsigned)n), dim3(1024), 0, s, out, x, y, w, dim, eps,
                              reinterpret_cast<__half *>(frag), (const __half *)nullptr, (const int *)nullptr, (float *)nullptr),
                    "residual add + rmsnorm");
}

extern "C" int cuk_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps, uint32_t *frag,
                           cudaStream_t s) {
    if (frag && dim % 128) return gptq_fail("rmsnorm: fragment order needs a width that is a multiple of 128, not %d", dim);
    return cu_check(cu_launch(rmsnorm_kernel<false>, dim3((unsigned)n), dim3(1024), 0, s, out, const_cast<float *>(x),
                              (const float *)nullptr, w, dim, eps, reinterpret_cast<__half *>(frag), (const __half *)nullptr,
                              (const int *)nullptr, (float *)nullptr),
                    "rmsnorm");
}

extern "C" int cuk_embed_rmsnorm(const uint16_t *emb, const int *ids, float *x, float *out, const float *w, int n, int dim,
                                 float eps, uint32_t *frag, float *inv_out, cudaStream_t s) {
    if (frag && dim % 128) return gptq_fail("embedding + rmsnorm: fragment order needs a width that is a multiple of 128, not %d", dim);
    return cu_check(cu_launch(rmsnorm_kernel<false>, dim3((unsigned)n), dim3(1024), 0, s, out, x, (const float *)nullptr, w, dim,
                              eps, reinterpret_cast<__half *>(frag), reinterpret_cast<const __half *>(emb), ids, inv_out),
                    "embedding + rmsnorm");
}

extern "C" int cuk_rope_kv(float *q, const float *k, const float *v, uint16_t *kc, uint16_t *vc, const float *inv_freq,
                           const int *pos0, int n, int n_heads, int n_kv, int hd, cudaStream_t s) {
    const int items = (n_heads + n_kv) * (hd / 2);
    return cu_check(cu_launch(rope_kv_kernel, dim3((unsigned)n, (unsigned)((items + 127) / 128)), dim3(128), 0, s, q, k, v,
                              reinterpret_cast<__half *>(kc), reinterpret_cast<__half *>(vc), inv_freq, pos0, n_heads, n_kv, hd),
                    "rope");
}

extern "C" int cuk_attention_setup(int max_seq) {
    const size_t smem = sizeof(float) * (size_t)max_seq;
    if (smem > 48 * 1024)
        return cu_check(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                        "attention shared memory");
    return 0;
}

extern "C" int cuk_attention(const float *q, const uint16_t *kc, const uint16_t *vc, float *out, const int *pos0, int n,
                             int max_seq, int n_heads, int n_kv, int hd, cudaStream_t s) {
    if (hd > kMaxHeadDim || hd % 2) return gptq_fail("attention: head_dim %d (even, at most %d)", hd, kMaxHeadDim);
    return cu_check(cu_launch(attention_kernel, dim3((unsigned)n_heads, (unsigned)n), dim3(kAttWarps * 32),
                              sizeof(float) * (size_t)max_seq, s, q, reinterpret_cast<const __half *>(kc),
                              reinterpret_cast<const __half *>(vc), out, pos0, n_heads, n_kv, hd, 1.0f / sqrtf((float)hd)),
                    "attention");
}

extern "C" int64_t cuk_attention_split_floats(int n, int max_seq, int n_heads, int hd) {
    const int splits = (max_seq + kMinSplitLen - 1) / kMinSplitLen;
    (void)n; /* room for kMaxDecodeTok tokens, the most one call takes */
    return (int64_t)kMaxDecodeTok * n_heads + (int64_t)kMaxDecodeTok * n_heads * splits * (hd + 2) + 2;
}

extern "C" int cuk_rope_attention_decode(const float *q, const float *k, const float *v, uint16_t *kc, uint16_t *vc,
                                         const float *inv_freq, float *out, uint32_t *out_frag, float *part, const int *pos0,
                                         int n, int max_seq, int n_heads, int n_kv, int hd, cudaStream_t s) {
    if (out_frag && (n_heads * hd) % 128)
        return gptq_fail("attention: fragment order needs a width that is a multiple of 128, not %d", n_heads * hd);
    if (hd > kMaxHeadDim || hd % 2) return gptq_fail("attention: head_dim %d (even, at most %d)", hd, kMaxHeadDim);
    if (n < 1 || n > kMaxDecodeTok) return gptq_fail("decode attention: %d tokens (1..%d)", n, kMaxDecodeTok);
    static int pw = -1;
    if (pw < 0) {
        const char *e = getenv("GPTQ_CUDA_ATT_PW");
        pw = e && (strcmp(e, "2") == 0 || strcmp(e, "8") == 0) ? atoi(e) : kDefaultPW;
    }
    const int len = kSplitWarps * pw, splits = (max_seq + len - 1) / len;
    auto kern = hd <= 128 ? (pw == 2 ? attention_split_kernel<2, 2> : pw == 8 ? attention_split_kernel<2, 8> : attention_split_kernel<2, 4>)
                          : (pw == 2 ? attention_split_kernel<4, 2> : pw == 8 ? attention_split_kernel<4, 8> : attention_split_kernel<4, 4>);
    return cu_check(cu_launch(kern, dim3((unsigned)n_heads, (unsigned)n, (unsigned)splits),
                              dim3(kSplitWarps * 32), 2 * sizeof(float) * (size_t)splits, s, q, k, v,
                              reinterpret_cast<__half *>(kc), reinterpret_cast<__half *>(vc), inv_freq, part, out, pos0,
                              n_heads, n_kv, hd, 1.0f / sqrtf((float)hd), reinterpret_cast<__half *>(out_frag)),
                    "attention");
}

extern "C" int cuk_silu_mul(float *g, const float *u, int64_t n, cudaStream_t s) {
    return cu_check(cu_launch(silu_mul_kernel, dim3(cu_grid(n)), dim3(256), 0, s, g, u, n), "silu");
}

extern "C" int cuk_add(float *x, const float *y, int64_t n, cudaStream_t s) {
    return cu_check(cu_launch(add_kernel, dim3(cu_grid(n)), dim3(256), 0, s, x, y, n), "residual add");
}

extern "C" int cuk_bias(float *y, const float *b, int64_t out, int n, cudaStream_t s) {
    return cu_check(cu_launch(bias_kernel, dim3(cu_grid(out * n)), dim3(256), 0, s, y, b, out, out * n), "bias");
}
