// Fused dequantizing GEMV for the qk layout (cuq.h), decode batches of 1..8 tokens.
//
// A thread block owns R = 4 rows; its warps split the rows' blocks.  Lane l of warp w
// reads quarter l%4 of block 8w + l/4 (+8·warps per step) of every row, so each step
// streams R·512 contiguous bytes per warp and each activation float4 is loaded once for
// R rows.  The next step's codes are loaded before the current ones are used.  The rows'
// scales and zero points are staged in shared memory first; the warps' sums meet there
// at the end.
//
// Codes become floats without integer conversion: OR-ing a code left in place at bit
// offset sh (< 23) into the mantissa of 2^23 gives the float 2^23 + code·2^sh exactly;
// subtracting 2^23 + zero·2^sh leaves (code − zero)·2^sh, exact.  Codes whose bits start
// at or above 23 − bits are taken from the word shifted right by K0·bits.  The 2^sh is
// taken out again with the scale, once per (row, code index), so the inner loop is one
// LOP3, one FADD and T FFMAs per weight.  This fp32 kernel is exact up to fp32 rounding;
// the fp16 kernel further down (2/4/8 bits, the default) works on pairs of codes.
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/model_kernels.h"

namespace {

constexpr int kRows = 4;           // rows per thread block
constexpr int kMaxWarps = 4;       // warps per thread block, splitting the rows' blocks
constexpr int kBlocksPerStep = 8;  // 64-byte blocks a warp covers per step (32 lanes × 16 B)
// Thread blocks per SM the register budget must allow (MINB below): at T = 1, 8 (64
// registers), so that a 4096-row layer (1024 blocks) runs in one wave and every block's
// loads are in flight from the start, the early ones computing while the late ones
// arrive.  Measured on the H100, 7B decode shapes: without the cap the fp16 kernel took
// 3.56 ms instead of 2.93 ms for the 224 GEMVs; making each warp take 2 or 4 steps of 8
// blocks, with fewer warps per row set, 3.20 and 3.50 ms.  Both kernels are bound by
// instruction issue (ncu: ~1.8 instructions per cycle per SM, 34% of DRAM bandwidth on a
// 4096x4096 4-bit layer), not by memory.

template <int BITS>
struct Codes {
    static constexpr int C = 16 / BITS;  // chunks per block
    static constexpr int NK = 2 * C;     // codes per word
    static constexpr int K0 = 23 / BITS; // codes decoded in place
    static constexpr int HI = K0 * BITS; // shift of the word for the others
    static_assert(NK - K0 <= 0 || (NK - K0) * BITS <= 23, "high codes fit the mantissa");
    __device__ static constexpr int shift(int k) { return k < K0 ? k * BITS : (k - K0) * BITS; }
    __device__ static constexpr uint32_t mask(int k) { return ((1u << BITS) - 1u) << shift(k); }
};

// (word & mask) | 0x4B000000 as one LOP3 (written plainly, the compiler emits two).
__device__ __forceinline__ uint32_t and_or_magic(uint32_t w, uint32_t mask) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "r"(mask), "n"(0x4B000000u));
    return r;
}

template <int BITS, int T, int MINB>
__global__ void __launch_bounds__(kMaxWarps * 32, MINB)
    qgemv_kernel(const uint4 *__restrict__ qw, const __half *__restrict__ scales, const uint8_t *__restrict__ zeros,
                 const int32_t *__restrict__ chunk_group, const float *__restrict__ x, float *__restrict__ y, int out,
                 int row_blocks, int nchunks, int groups, int in_pad, int zero_base, int ntok, int tiled) {
    pdl_trigger();
    using K = Codes<BITS>;
    extern __shared__ __align__(16) float smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int row0 = blockIdx.x * kRows;
    const int q = lane & 3;
    int rows[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) rows[r] = min(row0 + r, out - 1);

    // the warps of a thread block split each row's blocks: warp w takes blocks w·8 + lane/4 + k·8·nwarps
    const int bstep = kBlocksPerStep * nwarps;
    int b = warp * kBlocksPerStep + (lane >> 2);
    uint4 cur[kRows], nxt[kRows];
    int gcur[K::C], gnxt[K::C];
    // the first codes are requested before the scales are staged, so both latencies overlap
    if (b < row_blocks) {
#pragma unroll
        for (int r = 0; r < kRows; r++) cur[r] = __ldcs(qw + cuq_block(rows[r], b, row_blocks, tiled) * 4 + q);
#pragma unroll
        for (int j = 0; j < K::C; j++) gcur[j] = __ldg(chunk_group + min(b * K::C + j, nchunks - 1));
    }
    // the rows' scales (fp32) and zero points (+ zero_base) in shared memory: (kRows, groups) each
    float *ssc = smem, *szr = smem + kRows * groups;
    for (int i = threadIdx.x; i < kRows * groups; i += blockDim.x) {
        const int r = i / groups, g = i - r * groups;
        ssc[i] = __half2float(scales[(int64_t)rows[r] * groups + g]);
        szr[i] = (float)(zeros[(int64_t)rows[r] * groups + g] + zero_base);
    }
    pdl_wait();  // the codes and scales above do not depend on earlier kernels
    __syncthreads();

    float acc[kRows][T];
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = 0.f;
    // a token beyond ntok re-reads the last one (its sums are dropped)
    const float *xt[T];
#pragma unroll
    for (int t = 0; t < T; t++) xt[t] = x + (int64_t)min(t, ntok - 1) * in_pad;

    for (; b < row_blocks; b += bstep) {
        const int bn = b + bstep;
        if (bn < row_blocks) {
#pragma unroll
            for (int r = 0; r < kRows; r++) nxt[r] = __ldcs(qw + cuq_block(rows[r], bn, row_blocks, tiled) * 4 + q);
#pragma unroll
            for (int j = 0; j < K::C; j++) gnxt[j] = __ldg(chunk_group + min(bn * K::C + j, nchunks - 1));
        }
        uint32_t wlo[kRows][4], whi[kRows][4];
#pragma unroll
        for (int r = 0; r < kRows; r++) {
            wlo[r][0] = cur[r].x, wlo[r][1] = cur[r].y, wlo[r][2] = cur[r].z, wlo[r][3] = cur[r].w;
#pragma unroll
            for (int w = 0; w < 4; w++) whi[r][w] = wlo[r][w] >> K::HI;
        }
        int gprev = -1;
        float sc[kRows] = {}, zc[kRows] = {};
#pragma unroll
        for (int j = 0; j < K::C; j++) {
            const int c = b * K::C + j;
            if (c >= nchunks) break;
            const int g = gcur[j];
            if (g != gprev) {
                gprev = g;
#pragma unroll
                for (int r = 0; r < kRows; r++) sc[r] = ssc[r * groups + g], zc[r] = szr[r * groups + g];
            }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int k = 2 * j + h;
                const float pow2 = (float)(1u << K::shift(k));
                const int pos = c * 32 + 16 * h + 4 * q;
                float4 xv[T];
#pragma unroll
                for (int t = 0; t < T; t++) xv[t] = *reinterpret_cast<const float4 *>(xt[t] + pos);
#pragma unroll
                for (int r = 0; r < kRows; r++) {
                    const float off = fmaf(zc[r], pow2, 8388608.f);
                    float d[4];
#pragma unroll
                    for (int w = 0; w < 4; w++) {
                        const uint32_t word = k < K::K0 ? wlo[r][w] : whi[r][w];
                        d[w] = __uint_as_float(and_or_magic(word, K::mask(k))) - off;
                    }
                    const float sf = sc[r] * (1.0f / pow2);
#pragma unroll
                    for (int t = 0; t < T; t++) {
                        float v = d[0] * xv[t].x;
                        v = fmaf(d[1], xv[t].y, v);
                        v = fmaf(d[2], xv[t].z, v);
                        v = fmaf(d[3], xv[t].w, v);
                        acc[r][t] = fmaf(sf, v, acc[r][t]);
                    }
                }
            }
        }
#pragma unroll
        for (int r = 0; r < kRows; r++) cur[r] = nxt[r];
#pragma unroll
        for (int j = 0; j < K::C; j++) gcur[j] = gnxt[j];
    }
    // warp sums, then the warps' partial sums through shared memory (reusing the staging area)
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int t = 0; t < T; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[r][t] = v;
        }
    __syncthreads();
    float *red = smem;  // (nwarps, kRows·T)
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < kRows; r++)
#pragma unroll
            for (int t = 0; t < T; t++) red[warp * kRows * T + r * T + t] = acc[r][t];
    }
    __syncthreads();
    if (threadIdx.x < kRows * T) {
        const int r = threadIdx.x / T, t = threadIdx.x % T;
        float v = 0.f;
        for (int w = 0; w < nwarps; w++) v += red[w * kRows * T + threadIdx.x];
        if (row0 + r < out && t < ntok) y[(int64_t)t * out + row0 + r] = v;
    }
}

__global__ void permute_kernel(const int32_t *__restrict__ perm, const float *__restrict__ x, float *__restrict__ xp,
                               int64_t in, int64_t in_pad, int T) {
    pdl_trigger();
    pdl_wait();
    const int64_t n = in_pad * T;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / in_pad, p = i - t * in_pad;
        const int src = perm[p];
        xp[i] = src >= 0 ? x[t * in + src] : 0.f;
    }
}

// Shared memory of one thread block: fp32 scale and zero point of its rows' groups (later
// the warps' partial sums, which need less).
size_t smem_bytes(const cuq_layer *L) {
    size_t stage = (size_t)kRows * (size_t)L->groups * 2 * sizeof(float), red = (size_t)kMaxWarps * kRows * 8 * sizeof(float);
    return stage > red ? stage : red;
}
constexpr size_t kMaxSmem = 200 * 1024;

template <int BITS, int T, int MINB>
cudaError_t launch_t(const cuq_layer *L, float *y, const float *x, int ntok, cudaStream_t s) {
    const unsigned grid = (unsigned)((L->out + kRows - 1) / kRows);
    // enough warps that each takes at least one step of 8 blocks
    const int64_t steps = (L->row_blocks + kBlocksPerStep - 1) / kBlocksPerStep;
    const int nwarps = (int)(steps < kMaxWarps ? steps : kMaxWarps);
    const size_t smem = smem_bytes(L);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(qgemv_kernel<BITS, T, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return cu_launch(qgemv_kernel<BITS, T, MINB>, dim3(grid), dim3(nwarps * 32), smem, s, reinterpret_cast<const uint4 *>(L->qw),
                     reinterpret_cast<const __half *>(L->scales), L->zeros, L->chunk_group, x, y, (int)L->out,
                     (int)L->row_blocks, (int)L->nchunks, (int)L->groups, (int)L->in_pad, L->zero_base, ntok, L->tiled);
}

template <int BITS>
cudaError_t launch_bits(const cuq_layer *L, float *y, const float *x, int T, cudaStream_t s) {
    if (T == 1) return launch_t<BITS, 1, 8>(L, y, x, T, s);
    if (T == 2) return launch_t<BITS, 2, 4>(L, y, x, T, s);
    if (T <= 4) return launch_t<BITS, 4, 2>(L, y, x, T, s);
    return launch_t<BITS, 8, 2>(L, y, x, T, s);
}

// ---- the fp16 variant (2, 4, 8 bits): half2 arithmetic on pairs of codes ----
//
// Code k (< NK/2, low 16 bits of a word) and code k + NK/2 (the same offset in the high
// 16 bits) are the same input of chunks j = k/2 and j + C/2.  Shifting the word right by
// k·bits and AND-ing with the doubled mask, OR-ed into 0x6400 (fp16 1024) in each half,
// gives the half2 (1024 + c, 1024 + c') exactly; HSUB2 with (1024 + z, 1024 + z') leaves
// the exact (c − z, c' − z'), HMUL2 by the fp16 scales the fp16 weights (as the
// dequantize + cuBLAS path rounds them), and HFMA2 with the fp16 activations sums four
// words in fp16 before the sum joins the fp32 total.  About 3 instructions per weight
// instead of 5 in the fp32 kernel; results agree with it to fp16 rounding (~1e-3).
template <int BITS>
struct Pairs {
    static constexpr int C = 16 / BITS;   // chunks per block
    static constexpr int NK2 = 16 / BITS; // low codes per word (k < NK2)
    static constexpr uint32_t MASK = ((1u << BITS) - 1u) * 0x00010001u;
};

__device__ __forceinline__ uint32_t and_or_h(uint32_t w, uint32_t mask) {
    uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "r"(mask), "n"(0x64006400u));
    return r;
}

template <int BITS, int T, int MINB>
__global__ void __launch_bounds__(kMaxWarps * 32, MINB)
    qgemv_h_kernel(const uint4 *__restrict__ qw, const __half *__restrict__ scales, const uint8_t *__restrict__ zeros,
                   const int32_t *__restrict__ chunk_group, const float *__restrict__ x, float *__restrict__ y, int out,
                   int row_blocks, int nchunks, int groups, int in_pad, int zero_base, int ntok, int tiled) {
    pdl_trigger();
    using P = Pairs<BITS>;
    constexpr int C = P::C, HC = C / 2;
    extern __shared__ __align__(16) float smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int row0 = blockIdx.x * kRows;
    const int q = lane & 3;
    int rows[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) rows[r] = min(row0 + r, out - 1);
    const int bstep = kBlocksPerStep * nwarps;
    int b = warp * kBlocksPerStep + (lane >> 2);
    uint4 cur[kRows], nxt[kRows];
    if (b < row_blocks) {
#pragma unroll
        for (int r = 0; r < kRows; r++) cur[r] = __ldcs(qw + cuq_block(rows[r], b, row_blocks, tiled) * 4 + q);
    }
    // per (row, block, chunk pair p): half2 (1024 + z_p, 1024 + z_{p+C/2}) and half2 (s_p, s_{p+C/2})
    uint2 *zs = reinterpret_cast<uint2 *>(smem);
    for (int i = threadIdx.x; i < kRows * row_blocks * HC; i += blockDim.x) {
        const int r = i / (row_blocks * HC), rem = i - r * row_blocks * HC, bb = rem / HC, pp = rem - bb * HC;
        const int c0 = bb * C + pp, c1 = c0 + HC;
        __half2 z2, s2;
        float zf[2], sf[2];
        const int cs[2] = {c0, c1};
#pragma unroll
        for (int e = 0; e < 2; e++) {
            if (cs[e] < nchunks) {
                const int g = chunk_group[cs[e]];
                zf[e] = 1024.f + (float)(zeros[(int64_t)rows[r] * groups + g] + zero_base);
                sf[e] = __half2float(scales[(int64_t)rows[r] * groups + g]);
            } else {
                zf[e] = 1024.f, sf[e] = 0.f;  // padding: weight 0 (its activation is 0 too)
            }
        }
        z2 = __floats2half2_rn(zf[0], zf[1]);
        s2 = __floats2half2_rn(sf[0], sf[1]);
        zs[i] = make_uint2(*reinterpret_cast<uint32_t *>(&z2), *reinterpret_cast<uint32_t *>(&s2));
    }
    pdl_wait();  // the codes and scales above do not depend on earlier kernels
    __syncthreads();

    float acc[kRows][T];
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = 0.f;
    const float *xt[T];
#pragma unroll
    for (int t = 0; t < T; t++) xt[t] = x + (int64_t)min(t, ntok - 1) * in_pad;

    for (; b < row_blocks; b += bstep) {
        const int bn = b + bstep;
        if (bn < row_blocks) {
#pragma unroll
            for (int r = 0; r < kRows; r++) nxt[r] = __ldcs(qw + cuq_block(rows[r], bn, row_blocks, tiled) * 4 + q);
        }
        uint32_t wd[kRows][4];
#pragma unroll
        for (int r = 0; r < kRows; r++) wd[r][0] = cur[r].x, wd[r][1] = cur[r].y, wd[r][2] = cur[r].z, wd[r][3] = cur[r].w;
#pragma unroll
        for (int k = 0; k < P::NK2; k++) {
            const int j = k >> 1, h = k & 1;  // chunk j and j + C/2, half h
            const int c0 = b * C + j, c1 = c0 + HC;
            // activations of the pair as half2, per word w: (x[c0 pos], x[c1 pos])
            __half2 xh[T][4];
#pragma unroll
            for (int t = 0; t < T; t++) {
                const float4 a = *reinterpret_cast<const float4 *>(xt[t] + c0 * 32 + 16 * h + 4 * q);
                float4 bq = make_float4(0.f, 0.f, 0.f, 0.f);
                if (c1 < nchunks) bq = *reinterpret_cast<const float4 *>(xt[t] + c1 * 32 + 16 * h + 4 * q);
                xh[t][0] = __floats2half2_rn(a.x, bq.x);
                xh[t][1] = __floats2half2_rn(a.y, bq.y);
                xh[t][2] = __floats2half2_rn(a.z, bq.z);
                xh[t][3] = __floats2half2_rn(a.w, bq.w);
            }
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                const uint2 zsv = zs[((r * row_blocks) + b) * HC + j];
                const __half2 z2 = *reinterpret_cast<const __half2 *>(&zsv.x), s2 = *reinterpret_cast<const __half2 *>(&zsv.y);
                __half2 wv[4];
#pragma unroll
                for (int w = 0; w < 4; w++) {
                    const uint32_t v = and_or_h(wd[r][w] >> (k * BITS), P::MASK);
                    wv[w] = __hmul2(__hsub2(*reinterpret_cast<const __half2 *>(&v), z2), s2);
                }
#pragma unroll
                for (int t = 0; t < T; t++) {
                    __half2 hs = __hmul2(wv[0], xh[t][0]);
                    hs = __hfma2(wv[1], xh[t][1], hs);
                    hs = __hfma2(wv[2], xh[t][2], hs);
                    hs = __hfma2(wv[3], xh[t][3], hs);
                    const float2 f = __half22float2(hs);
                    acc[r][t] += f.x + f.y;
                }
            }
        }
#pragma unroll
        for (int r = 0; r < kRows; r++) cur[r] = nxt[r];
    }
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int t = 0; t < T; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            acc[r][t] = v;
        }
    __syncthreads();
    float *red = smem;
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < kRows; r++)
#pragma unroll
            for (int t = 0; t < T; t++) red[warp * kRows * T + r * T + t] = acc[r][t];
    }
    __syncthreads();
    if (threadIdx.x < kRows * T) {
        const int r = threadIdx.x / T, t = threadIdx.x % T;
        float v = 0.f;
        for (int w = 0; w < nwarps; w++) v += red[w * kRows * T + threadIdx.x];
        if (row0 + r < out && t < ntok) y[(int64_t)t * out + row0 + r] = v;
    }
}

size_t smem_bytes_h(const cuq_layer *L) {
    size_t stage = (size_t)kRows * (size_t)L->row_blocks * (size_t)(QK_CHUNKS_PER_BLOCK(L->bits) / 2) * 8,
           red = (size_t)kMaxWarps * kRows * 8 * sizeof(float);
    return stage > red ? stage : red;
}

template <int BITS, int T, int MINB>
cudaError_t launch_h(const cuq_layer *L, float *y, const float *x, int ntok, cudaStream_t s) {
    const unsigned grid = (unsigned)((L->out + kRows - 1) / kRows);
    const int64_t steps = (L->row_blocks + kBlocksPerStep - 1) / kBlocksPerStep;
    const int nwarps = (int)(steps < kMaxWarps ? steps : kMaxWarps);
    const size_t smem = smem_bytes_h(L);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(qgemv_h_kernel<BITS, T, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return cu_launch(qgemv_h_kernel<BITS, T, MINB>, dim3(grid), dim3(nwarps * 32), smem, s,
                     reinterpret_cast<const uint4 *>(L->qw), reinterpret_cast<const __half *>(L->scales), L->zeros,
                     L->chunk_group, x, y, (int)L->out, (int)L->row_blocks, (int)L->nchunks, (int)L->groups, (int)L->in_pad,
                     L->zero_base, ntok, L->tiled);
}

template <int BITS>
cudaError_t launch_bits_h(const cuq_layer *L, float *y, const float *x, int T, cudaStream_t s) {
    if (T == 1) return launch_h<BITS, 1, 8>(L, y, x, T, s);
    if (T == 2) return launch_h<BITS, 2, 4>(L, y, x, T, s);
    if (T <= 4) return launch_h<BITS, 4, 2>(L, y, x, T, s);
    return launch_h<BITS, 8, 2>(L, y, x, T, s);
}


// ---- the tensor-core variant (4-bit, every 64-byte block in one group) ----
//
// A warp multiplies a tile of 16 rows with mma.m16n8k16 (fp16 operands, fp32 accumulators).
// Lane (g = lane/4, t = lane%4) reads quarter t of the current block of rows g and g + 8,
// exactly the qk access pattern, and its 4 words give 16 half2 per row of
// (1024 + code k, 1024 + code k+4) by one LOP3 each: the A fragments of 8 mma's, whose
// k-slots are whatever inputs the lane holds.  The B fragments are the activations of
// token g at those same inputs (lanes g >= T give zeros), so T = 1..8 costs the same.
// The codes go in as 1024 + c: an all-ones A through the same B gives Σx per token, and
// per block  y += s · (D − (1024 + z) · Σx)  in fp32 (block = group, so one scale).
// About 0.5 instructions per weight against 4 in the half2 kernel.  Measured on the H100's
// 224 decode GEMVs of the 7B shape with programmatic dependent launch: 2.39 ms at T = 1
// (2.61 ms before it), ~50% of the copy bandwidth; ncu on the model's layers alone shows
// 23-39% of DRAM bandwidth at 23-33% occupancy (docs/PERFORMANCE.md: what was tried).
// With the codes in the 16-row tile layout (cuq.h, the default for these layers) a warp's
// two loads per step read 1 KiB contiguously: 2.19 ms instead of 2.31 ms for the 224 GEMVs.
constexpr int kMmaWarps = 8;

__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t h2bits(__half2 h) { return *reinterpret_cast<uint32_t *>(&h); }

// Up to kMaxParts layers with the same input width in one launch (q/k/v, gate/up): more
// tiles in flight per launch, fewer launches.
constexpr int kMaxParts = 3;
struct MmaPart {
    const uint4 *qw;
    const __half *scales;
    const uint8_t *zeros;
    const int32_t *chunk_group;
    const float *x;  /* (T, in_pad), permuted for act-order layers */
    const float *x2; /* NULL, or (T, in_pad): the input is silu(x) · x2 (SwiGLU fused into down_proj) */
    float *y;        /* (T, out) */
    int out, groups, zero_base, tile0; /* tile0: first tile (16 rows) of this part in the grid */
    int tiled;                         /* codes in the 16-row tile layout (cuq.h) */
};
struct MmaParts {
    MmaPart p[kMaxParts];
    int n;
    int prefetch; /* ask L2 for the tile's codes at the start (cp.async.bulk.prefetch) */
};

// The kernel runs in three phases.  Before pdl_wait(): request the codes (and group
// numbers) of the warp's first D steps into a register ring and stage the tile's scales
// and zero points in shared memory; none of this depends on the previous kernel, so with
// programmatic dependent launch it overlaps that kernel's tail.  After pdl_wait(): with
// XS, the activations are staged once in shared memory as the B fragments' fp16 pairs
// (one L2 round trip per thread block instead of one per step); without XS (many tokens
// of a wide layer) each step reads them from global memory.  Then the steps: each
// refills its ring slot with the codes D steps ahead before it computes.
// The activation vector's 4 inputs at i: x, or silu(x) · x2 exactly as cuk_silu_mul computes it.
__device__ __forceinline__ float4 act4(const float *x, const float *x2, int64_t i) {
    float4 a = *reinterpret_cast<const float4 *>(x + i);
    if (x2) {
        const float4 u = *reinterpret_cast<const float4 *>(x2 + i);
        a.x = a.x / (1.0f + expf(-a.x)) * u.x;
        a.y = a.y / (1.0f + expf(-a.y)) * u.y;
        a.z = a.z / (1.0f + expf(-a.z)) * u.z;
        a.w = a.w / (1.0f + expf(-a.w)) * u.w;
    }
    return a;
}

// One m16n8k16 step of the tile: 4 words of codes of rows g (wa) and g + 8 (wb), the B
// fragments bx of the lane's inputs, the block's scale and 1024 + zero point of both rows.
__device__ __forceinline__ void mma_block(float (&acc)[4], const uint32_t (&wa)[4], const uint32_t (&wb)[4],
                                          const uint32_t (&bx)[4][4], float2 fa, float2 fb) {
    const uint32_t ones[4] = {0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u};
    float d[4] = {0.f, 0.f, 0.f, 0.f}, xsum[4] = {0.f, 0.f, 0.f, 0.f};
    // mma m takes (w, p) = pairs 2m and 2m+1 of the 16 (w, p) in the order i = 4w + p
#pragma unroll
    for (int m = 0; m < 8; m++) {
        const int i0 = 2 * m, i1 = 2 * m + 1;
        const int w0 = i0 >> 2, p0 = i0 & 3, w1 = i1 >> 2, p1 = i1 & 3;
        const uint32_t a[4] = {and_or_h(wa[w0] >> (4 * p0), 0x000F000Fu), and_or_h(wb[w0] >> (4 * p0), 0x000F000Fu),
                               and_or_h(wa[w1] >> (4 * p1), 0x000F000Fu), and_or_h(wb[w1] >> (4 * p1), 0x000F000Fu)};
        mma16816(d, a, bx[p0][w0], bx[p1][w1]);
        mma16816(xsum, ones, bx[p0][w0], bx[p1][w1]);
    }
    acc[0] = fmaf(fa.x, d[0] - fa.y * xsum[0], acc[0]);
    acc[1] = fmaf(fa.x, d[1] - fa.y * xsum[1], acc[1]);
    acc[2] = fmaf(fb.x, d[2] - fb.y * xsum[2], acc[2]);
    acc[3] = fmaf(fb.x, d[3] - fb.y * xsum[3], acc[3]);
}

// TMA: the first sb = min(row_blocks, kTmaBlocks) blocks of each of the tile's 16 rows are
// copied into shared memory by bulk copies (cp.async.bulk, one per row, completing on an
// mbarrier) issued before pdl_wait(): the whole tile of a 4096-input layer is in flight
// from the block's start without holding registers.  The blocks after sb go through the
// register ring.
constexpr int kTmaBlocks = 32;

template <int D, bool XS, bool TMA, int MINB>
__global__ void __launch_bounds__(kMmaWarps * 32, MINB)
    qgemv_mma4_kernel(const __grid_constant__ MmaParts parts, int row_blocks, int in_pad, int ntok) {
    constexpr int C = 4;  // chunks per block at 4 bits
    pdl_trigger();
    extern __shared__ __align__(16) float smem[];
    int pi = 0;
#pragma unroll
    for (int k = 1; k < kMaxParts; k++)
        if (k < parts.n && (int)blockIdx.x >= parts.p[k].tile0) pi = k;
    const MmaPart &P = parts.p[pi];
    const uint4 *__restrict__ qw = P.qw;
    const __half *__restrict__ scales = P.scales;
    const uint8_t *__restrict__ zeros = P.zeros;
    const int32_t *__restrict__ chunk_group = P.chunk_group;
    const float *__restrict__ x = P.x;
    const float *__restrict__ x2 = P.x2;
    float *__restrict__ y = P.y;
    const int out = P.out, groups = P.groups, zero_base = P.zero_base;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int row0 = ((int)blockIdx.x - P.tile0) * 16;
    const int ra = min(row0 + g, out - 1), rb = min(row0 + g + 8, out - 1);
    // the lane's quarter of block 0 of rows g and g + 8, and the distance between a row's blocks
    // (qk layout: 64 bytes, so a warp load touches 8 rows x 64 bytes; tile layout: the tile's
    // 16 blocks b follow each other, 1 KiB, so the two loads of a warp read 1 KiB contiguously)
    const bool tiled = P.tiled != 0;
    const uint4 *qa = tiled ? qw + ((int64_t)(row0 >> 4) * row_blocks * 16 + g) * 4 + t : qw + (int64_t)ra * row_blocks * 4 + t;
    const uint4 *qb = tiled ? qa + 8 * 4 : qw + (int64_t)rb * row_blocks * 4 + t;
    const int64_t bs = tiled ? 16 * 4 : 4;
    // prefetch: the tile's codes requested into L2 at once, 16 bulk prefetches of row_blocks·64
    // bytes (one row each in the qk layout, a 16th of the contiguous tile in the tile layout),
    // so that the whole tile streams from DRAM while the ring's loads wait on L2 only
    if (parts.prefetch && warp == 0 && lane < 16) {
        const uint4 *src = tiled ? qw + ((int64_t)(row0 >> 4) * row_blocks * 16 + (int64_t)lane * row_blocks) * 4
                                 : qw + (int64_t)min(row0 + lane, out - 1) * row_blocks * 4;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(src), "r"(row_blocks * 64) : "memory");
    }
    // shared memory: [TMA: mbarrier (16 B), codes (16, sb·64 + 16 B)] [scales (16, groups) float2]
    // [block groups (row_blocks) int] [XS: activations]
    const int sb = TMA ? min(row_blocks, kTmaBlocks) : 0;
    const int srow = sb * 64 + 16;  // bytes per row of codes, padded against bank conflicts
    char *sp = reinterpret_cast<char *>(smem);
    uint64_t *bar = reinterpret_cast<uint64_t *>(sp);
    const char *scodes = sp + 16;
    if (TMA) {
        if (threadIdx.x == 0) {
            mbar_init(bar, 1);
            mbar_fence_init();
            mbar_arrive_expect(bar, 16 * sb * 64);
            for (int r = 0; r < 16; r++)
                bulk_copy((void *)(scodes + r * srow), qw + (int64_t)min(row0 + r, out - 1) * row_blocks * 4, sb * 64, bar);
        }
        sp += 16 + 16 * srow;
    }
    // warp w takes blocks sb + w, sb + w + nwarps, ... through the ring; slot s holds step s (mod D)
    uint4 ca[D], cb[D];
#pragma unroll
    for (int s = 0; s < D; s++) {
        const int b = sb + warp + s * nwarps;
        ca[s] = make_uint4(0, 0, 0, 0), cb[s] = ca[s];
        if (b < row_blocks) ca[s] = __ldcs(qa + b * bs), cb[s] = __ldcs(qb + b * bs);
    }
    // the tile's scales and 1024 + zero points, (16, groups) float2, and each block's group
    float2 *sz = reinterpret_cast<float2 *>(sp);
    for (int i = threadIdx.x; i < 16 * groups; i += blockDim.x) {
        const int r = i / groups, gg = i - r * groups, row = min(row0 + r, out - 1);
        sz[i] = make_float2(__half2float(scales[(int64_t)row * groups + gg]),
                            1024.f + (float)(zeros[(int64_t)row * groups + gg] + zero_base));
    }
    int *sgrp = reinterpret_cast<int *>(sz + 16 * groups);
    for (int b = threadIdx.x; b < row_blocks; b += blockDim.x) sgrp[b] = __ldg(chunk_group + b * C);
    pdl_wait();
    // XS: token k's B fragments at xs + k·xrow: for block b and lane quarter t, 16 half2
    // (p, w) = (x[pos], x[pos + 64]), pos = 128 b + 32 (p/2) + 16 (p%2) + 4 t + w; rows
    // padded by 16 bytes so that the tokens' rows start on different banks
    const int xrow = row_blocks * 64 + 4;
    uint32_t *xs = reinterpret_cast<uint32_t *>(sgrp + ((row_blocks + 3) & ~3));
    if (XS) {
        const int units = ntok * row_blocks * 16;
        for (int u = threadIdx.x; u < units; u += blockDim.x) {
            const int tk = u / (row_blocks * 16), r = u - tk * row_blocks * 16, b = r >> 4, tt = (r >> 2) & 3, p = r & 3;
            const int64_t xi = (int64_t)tk * in_pad + b * C * 32 + 32 * (p >> 1) + 16 * (p & 1) + 4 * tt;
            const float4 lo = act4(x, x2, xi), hi = act4(x, x2, xi + 64);
            *reinterpret_cast<uint4 *>(xs + tk * xrow + r * 4) =
                make_uint4(h2bits(__floats2half2_rn(lo.x, hi.x)), h2bits(__floats2half2_rn(lo.y, hi.y)),
                           h2bits(__floats2half2_rn(lo.z, hi.z)), h2bits(__floats2half2_rn(lo.w, hi.w)));
        }
    }
    __syncthreads();
    const bool has_tok = g < ntok;
    const int64_t xt = (int64_t)min(g, ntok - 1) * in_pad;
    const uint32_t *xst = xs + min(g, ntok - 1) * xrow + t * 16;
    // B: token g's activations at the lane's inputs of block b, pair p of word w = (x[pos], x[pos + 64])
    auto load_b = [&](int b, uint32_t (&bx)[4][4]) {
        if (XS) {
#pragma unroll
            for (int p = 0; p < 4; p++) {
                uint4 v = make_uint4(0, 0, 0, 0);
                if (has_tok) v = *reinterpret_cast<const uint4 *>(xst + b * 64 + p * 4);
                bx[p][0] = v.x, bx[p][1] = v.y, bx[p][2] = v.z, bx[p][3] = v.w;
            }
        } else {
#pragma unroll
            for (int p = 0; p < 4; p++) {
                const int base = b * C * 32 + 32 * (p >> 1) + 16 * (p & 1) + 4 * t;
                float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
                if (has_tok) lo = act4(x, x2, xt + base), hi = act4(x, x2, xt + base + 64);
                bx[p][0] = h2bits(__floats2half2_rn(lo.x, hi.x));
                bx[p][1] = h2bits(__floats2half2_rn(lo.y, hi.y));
                bx[p][2] = h2bits(__floats2half2_rn(lo.z, hi.z));
                bx[p][3] = h2bits(__floats2half2_rn(lo.w, hi.w));
            }
        }
    };
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    if (TMA) {  // the blocks in shared memory
        mbar_wait(bar, 0);
        for (int b = warp; b < sb; b += nwarps) {
            const uint4 va = *reinterpret_cast<const uint4 *>(scodes + g * srow + b * 64 + t * 16),
                        vb = *reinterpret_cast<const uint4 *>(scodes + (g + 8) * srow + b * 64 + t * 16);
            const uint32_t wa[4] = {va.x, va.y, va.z, va.w}, wb[4] = {vb.x, vb.y, vb.z, vb.w};
            uint32_t bx[4][4];
            load_b(b, bx);
            const int grp = sgrp[b];
            mma_block(acc, wa, wb, bx, sz[g * groups + grp], sz[(g + 8) * groups + grp]);
        }
    }
    for (int b0 = sb + warp; b0 < row_blocks; b0 += D * nwarps) {
#pragma unroll
        for (int s = 0; s < D; s++) {
            const int b = b0 + s * nwarps;
            if (b >= row_blocks) break;
            const uint32_t wa[4] = {ca[s].x, ca[s].y, ca[s].z, ca[s].w}, wb[4] = {cb[s].x, cb[s].y, cb[s].z, cb[s].w};
            const int bn = b + D * nwarps;
            if (bn < row_blocks) ca[s] = __ldcs(qa + bn * bs), cb[s] = __ldcs(qb + bn * bs);
            uint32_t bx[4][4];
            load_b(b, bx);
            const int grp = sgrp[b];
            mma_block(acc, wa, wb, bx, sz[g * groups + grp], sz[(g + 8) * groups + grp]);
        }
    }
    // the warps' tiles meet in shared memory (after everyone is done with the codes and
    // scales; past the mbarrier, which is not reused)
    __syncthreads();
    float4 *red = reinterpret_cast<float4 *>(reinterpret_cast<char *>(smem) + 16);
    red[warp * 32 + lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    __syncthreads();
    if (warp == 0) {
        float4 v = red[lane];
        for (int w = 1; w < nwarps; w++) {
            const float4 u = red[w * 32 + lane];
            v.x += u.x, v.y += u.y, v.z += u.z, v.w += u.w;
        }
        const int t0 = 2 * t, t1 = 2 * t + 1;
        if (t0 < ntok) {
            if (row0 + g < out) y[(int64_t)t0 * out + row0 + g] = v.x;
            if (row0 + g + 8 < out) y[(int64_t)t0 * out + row0 + g + 8] = v.z;
        }
        if (t1 < ntok) {
            if (row0 + g < out) y[(int64_t)t1 * out + row0 + g] = v.y;
            if (row0 + g + 8 < out) y[(int64_t)t1 * out + row0 + g + 8] = v.w;
        }
    }
}

// Activations staged in shared memory (XS) while they take at most this much of it.
constexpr size_t kMmaActSmem = 48 * 1024;
int mma_depth = -1; /* ring depth D (1, 2, 4); GPTQ_CUDA_MMA_DEPTH */
int mma_xs = -1;    /* XS allowed; GPTQ_CUDA_MMA_XS=0 keeps the activations in global memory */
int mma_tma = -1;   /* the first blocks by bulk copies (depth 2 only); GPTQ_CUDA_MMA_TMA */
// Thread blocks per SM the register budget must allow (1: no cap; 3 at 8 warps: 84
// registers; 4: 64, room for the next kernel's blocks to start early); GPTQ_CUDA_MMA_MINB.
int mma_minb = -1;
int mma_warps = -1; /* warps per thread block (at most kMmaWarps); GPTQ_CUDA_MMA_WARPS */
int mma_pf = -1;    /* L2 prefetch of each tile's codes at the start; GPTQ_CUDA_MMA_PF */
constexpr int kMmaDefaultDepth = 2, kMmaDefaultXs = 1, kMmaDefaultTma = 0, kMmaDefaultMinb = 3, kMmaDefaultWarps = 8,
              kMmaDefaultPf = 0;

// Shared memory of the tensor-core GEMV before the activations: TMA codes, scales, groups.
size_t mma_stage_bytes(const cuq_layer *L, bool tma) {
    const size_t sb = (size_t)(L->row_blocks < kTmaBlocks ? L->row_blocks : kTmaBlocks);
    return (tma ? 16 + 16 * (sb * 64 + 16) : 0) + (size_t)16 * (size_t)L->groups * 8 + 4 * (((size_t)L->row_blocks + 3) & ~(size_t)3);
}
size_t mma_act_bytes(const cuq_layer *L, int ntok) { return (size_t)ntok * ((size_t)L->row_blocks * 256 + 16); }

size_t smem_bytes_mma(const cuq_layer *L) {
    size_t stage = mma_stage_bytes(L, false), red = 16 + (size_t)kMmaWarps * 32 * 16;
    return stage > red ? stage : red;
}

bool mma_ok(const cuq_layer *L) { return L->bits == 4 && L->block_group && smem_bytes_mma(L) <= kMaxSmem; }

template <int D, bool XS, bool TMA, int MINB>
cudaError_t launch_mma4_k(const MmaParts &parts, int tiles, int nwarps, size_t smem, int row_blocks, int in_pad, int ntok,
                          cudaStream_t s) {
    if (smem > 48 * 1024) {
        cudaError_t e =
            cudaFuncSetAttribute(qgemv_mma4_kernel<D, XS, TMA, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    return cu_launch(qgemv_mma4_kernel<D, XS, TMA, MINB>, dim3((unsigned)tiles), dim3(nwarps * 32), smem, s, parts,
                     row_blocks, in_pad, ntok);
}

template <int D, bool TMA>
cudaError_t launch_mma4_m(const MmaParts &parts, bool xs, int tiles, int nwarps, size_t smem, int row_blocks, int in_pad,
                          int ntok, cudaStream_t s) {
    if (mma_minb >= 4)
        return xs ? launch_mma4_k<D, true, TMA, 4>(parts, tiles, nwarps, smem, row_blocks, in_pad, ntok, s)
                  : launch_mma4_k<D, false, TMA, 4>(parts, tiles, nwarps, smem, row_blocks, in_pad, ntok, s);
    if (mma_minb == 3)
        return xs ? launch_mma4_k<D, true, TMA, 3>(parts, tiles, nwarps, smem, row_blocks, in_pad, ntok, s)
                  : launch_mma4_k<D, false, TMA, 3>(parts, tiles, nwarps, smem, row_blocks, in_pad, ntok, s);
    return xs ? launch_mma4_k<D, true, TMA, 1>(parts, tiles, nwarps, smem, row_blocks, in_pad, ntok, s)
              : launch_mma4_k<D, false, TMA, 1>(parts, tiles, nwarps, smem, row_blocks, in_pad, ntok, s);
}

int env_int(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && *e ? atoi(e) : dflt;
}

// n layers (all mma_ok, the same row_blocks and in_pad) with inputs xs[k] in one launch;
// x2 non-NULL (one layer): the input is silu(xs[0]) · x2.
cudaError_t launch_mma4(const cuq_layer *const *L, float *const *y, const float *const *xs, int n, int ntok,
                        cudaStream_t s, const float *x2 = nullptr) {
    if (mma_depth < 1) mma_depth = env_int("GPTQ_CUDA_MMA_DEPTH", kMmaDefaultDepth);
    if (mma_xs < 0) mma_xs = env_int("GPTQ_CUDA_MMA_XS", kMmaDefaultXs) != 0;
    if (mma_tma < 0) mma_tma = env_int("GPTQ_CUDA_MMA_TMA", kMmaDefaultTma) != 0;
    if (mma_minb < 1) mma_minb = env_int("GPTQ_CUDA_MMA_MINB", kMmaDefaultMinb);
    if (mma_warps < 1) mma_warps = env_int("GPTQ_CUDA_MMA_WARPS", kMmaDefaultWarps);
    if (mma_warps < 1 || mma_warps > kMmaWarps) mma_warps = kMmaWarps;
    if (mma_pf < 0) mma_pf = env_int("GPTQ_CUDA_MMA_PF", kMmaDefaultPf) != 0;
    MmaParts parts;
    memset(&parts, 0, sizeof parts);
    parts.n = n;
    parts.prefetch = mma_pf;
    int tiles = 0;
    size_t stage = 0, stage_tma = 0;
    bool any_tiled = false; /* the bulk copies read rows of the qk layout */
    for (int k = 0; k < n; k++) {
        parts.p[k] = MmaPart{reinterpret_cast<const uint4 *>(L[k]->qw), reinterpret_cast<const __half *>(L[k]->scales),
                             L[k]->zeros, L[k]->chunk_group, xs[k], k == 0 ? x2 : nullptr, y[k], (int)L[k]->out,
                             (int)L[k]->groups, L[k]->zero_base, tiles, L[k]->tiled};
        tiles += (int)((L[k]->out + 15) / 16);
        if (mma_stage_bytes(L[k], false) > stage) stage = mma_stage_bytes(L[k], false);
        if (mma_stage_bytes(L[k], true) > stage_tma) stage_tma = mma_stage_bytes(L[k], true);
        any_tiled |= L[k]->tiled != 0;
    }
    const size_t act = mma_act_bytes(L[0], ntok);
    const bool tma = mma_tma && !any_tiled && mma_depth == 2 && stage_tma <= kMaxSmem;
    if (tma) stage = stage_tma;
    const bool xs_smem = mma_xs && act <= kMmaActSmem && stage + act <= kMaxSmem;
    size_t smem = stage + (xs_smem ? act : 0);
    if (smem < 16 + (size_t)kMmaWarps * 32 * 16) smem = 16 + (size_t)kMmaWarps * 32 * 16;
    const int nwarps = (int)(L[0]->row_blocks < mma_warps ? L[0]->row_blocks : mma_warps);
    const int rb = (int)L[0]->row_blocks, ip = (int)L[0]->in_pad;
    if (tma) return launch_mma4_m<2, true>(parts, xs_smem, tiles, nwarps, smem, rb, ip, ntok, s);
    if (mma_depth >= 4) return launch_mma4_m<4, false>(parts, xs_smem, tiles, nwarps, smem, rb, ip, ntok, s);
    if (mma_depth >= 2) return launch_mma4_m<2, false>(parts, xs_smem, tiles, nwarps, smem, rb, ip, ntok, s);
    return launch_mma4_m<1, false>(parts, xs_smem, tiles, nwarps, smem, rb, ip, ntok, s);
}

}  // namespace

static int use_fp16_gemv = -1; /* GPTQ_CUDA_GEMV=fp32 selects the exact kernel for every width */
static int use_mma = -1;       /* GPTQ_CUDA_GEMV=half2 keeps 4-bit layers off the tensor-core kernel */

extern "C" void cuq_gemv_set_mma(int on) { use_mma = on; }

static int use_frag = -1; /* GPTQ_CUDA_FRAG=0 keeps decode off the fragment-order GEMV */
extern "C" void cuq_gemv_set_frag(int on) { use_frag = on != 0; }
static void settle_kernels(void);
extern "C" int cuq_frag_enabled(void) {
    settle_kernels();
    if (use_frag < 0) {
        const char *e = getenv("GPTQ_CUDA_FRAG");
        use_frag = !(e && strcmp(e, "0") == 0);
    }
    return use_frag && use_fp16_gemv && use_mma;
}

extern "C" void cuq_gemv_set_prefetch(int on) { mma_pf = on != 0; }

extern "C" void cuq_gemv_set_depth(int depth, int act_smem, int min_blocks, int tma, int warps) {
    if (warps >= 1 && warps <= kMmaWarps) mma_warps = warps;
    if (depth >= 1) mma_depth = depth;
    if (act_smem >= 0) mma_xs = act_smem != 0;
    if (min_blocks >= 1) mma_minb = min_blocks;
    if (tma >= 0) mma_tma = tma != 0;
}


extern "C" void cuq_gemv_set_fp32(int on) {
    use_fp16_gemv = !on;
    if (use_mma < 0) use_mma = 1;
}

/* The kernel choice from the environment, once (unless a test set it). */
static void settle_kernels(void) {
    if (use_fp16_gemv < 0) {
        const char *e = getenv("GPTQ_CUDA_GEMV");
        use_fp16_gemv = !(e && strcmp(e, "fp32") == 0);
        if (use_mma < 0) use_mma = !(e && (strcmp(e, "fp32") == 0 || strcmp(e, "half2") == 0));
    }
}

extern "C" int cuq_gemv(const cuq_layer *L, float *y, const float *x, float *xbuf, int T, cudaStream_t s) {
    settle_kernels();

    if (T < 1 || T > CUQ_MAX_GEMV_T) return gptq_fail("cuq_gemv: %d tokens (1..%d)", T, CUQ_MAX_GEMV_T);
    if (smem_bytes(L) > kMaxSmem || smem_bytes_h(L) > kMaxSmem)
        return gptq_fail("cuq_gemv: %lld groups per row are more than the GEMV stages in shared memory", (long long)L->groups);
    if (L->perm) {
        if (!xbuf) return gptq_fail("cuq_gemv: an act-order layer needs a scratch buffer");
        const int64_t n = L->in_pad * T;
        const unsigned grid = (unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
        if (cu_check(cu_launch(permute_kernel, dim3(grid), dim3(256), 0, s, (const int32_t *)L->perm, x, xbuf, L->in, L->in_pad, T),
                     "act-order permutation"))
            return -1;
        x = xbuf;
    }
    cudaError_t e;
    switch (L->bits) {
    case 2: e = use_fp16_gemv ? launch_bits_h<2>(L, y, x, T, s) : launch_bits<2>(L, y, x, T, s); break;
    case 3: e = launch_bits<3>(L, y, x, T, s); break;
    case 4:
        e = use_fp16_gemv && use_mma && mma_ok(L) ? launch_mma4(&L, &y, &x, 1, T, s)
            : use_fp16_gemv                       ? launch_bits_h<4>(L, y, x, T, s)
                                                  : launch_bits<4>(L, y, x, T, s);
        break;
    case 8: e = use_fp16_gemv ? launch_bits_h<8>(L, y, x, T, s) : launch_bits<8>(L, y, x, T, s); break;
    default: return gptq_fail("cuq_gemv: %d-bit weights are not supported", L->bits);
    }
    return cu_check(e, "quantized GEMV");
}

extern "C" int cuq_gemv_multi(const cuq_layer *const *L, float *const *y, int n, const float *x, float *xbuf, int T,
                              cudaStream_t s) {
    settle_kernels();
    bool together = n >= 1 && n <= kMaxParts && T >= 1 && T <= CUQ_MAX_GEMV_T;
    for (int k = 0; together && k < n; k++)
        together = use_fp16_gemv && use_mma && mma_ok(L[k]) && L[k]->row_blocks == L[0]->row_blocks &&
                   L[k]->in_pad == L[0]->in_pad && L[k]->in == L[0]->in;
    if (!together) {
        for (int k = 0; k < n; k++)
            if (cuq_gemv(L[k], y[k], x, xbuf, T, s)) return -1;
        return 0;
    }
    const float *xs[kMaxParts];
    for (int k = 0; k < n; k++) {
        xs[k] = x;
        if (L[k]->perm) { /* each act-order layer its own permuted copy, in successive parts of xbuf */
            if (!xbuf) return gptq_fail("cuq_gemv: an act-order layer needs a scratch buffer");
            float *xp = xbuf + (size_t)k * L[k]->in_pad * T;
            const int64_t m = L[k]->in_pad * T;
            const unsigned grid = (unsigned)((m + 255) / 256 < 4096 ? (m + 255) / 256 : 4096);
            if (cu_check(cu_launch(permute_kernel, dim3(grid), dim3(256), 0, s, (const int32_t *)L[k]->perm, x, xp, L[k]->in,
                                   L[k]->in_pad, T),
                         "act-order permutation"))
                return -1;
            xs[k] = xp;
        }
    }
    return cu_check(launch_mma4(L, y, xs, n, T, s), "quantized GEMV");
}

extern "C" int cuq_gemv_silu(const cuq_layer *L, float *y, float *g, const float *u, float *xbuf, int T, cudaStream_t s) {
    settle_kernels();
    if (T < 1 || T > CUQ_MAX_GEMV_T) return gptq_fail("cuq_gemv: %d tokens (1..%d)", T, CUQ_MAX_GEMV_T);
    if (!(use_fp16_gemv && use_mma && mma_ok(L) && !L->perm && L->in_pad == L->in)) {
        if (cuk_silu_mul(g, u, (int64_t)T * L->in, s)) return -1;
        return cuq_gemv(L, y, g, xbuf, T, s);
    }
    const float *x = g;
    return cu_check(launch_mma4(&L, &y, &x, 1, T, s, u), "quantized GEMV (SwiGLU input)");
}
