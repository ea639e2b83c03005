// The fp16 dense GEMV (the unquantized baseline and lm_head), dequantization of a qk layer
// to fp16 for the cuBLAS prefill path, and activation conversions.
#include <cuda_fp16.h>

#include <cstdlib>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"

namespace {

constexpr int kRows = 4;   // rows per warp
constexpr int kWarps = 4;  // warps per thread block

// y (T, out) = x (T, in) · Wᵀ, W fp16 (out, in).  A warp owns kRows rows; lane l reads 8
// halves (16 bytes) at column 8·(l + 32·i), so a warp streams 512 contiguous bytes of each
// row per step; the activations of a step are loaded once for all rows.  The weights of
// the first U steps are requested before pdl_wait() (they depend on no earlier kernel, so
// with programmatic dependent launch the requests overlap the previous kernel) and then
// kept in a ring of U steps in registers: U·kRows 16-byte loads in flight per lane.
// in % 8 != 0 or a misaligned row falls back to scalar loads for the whole row set.
// nw non-NULL (T = 1): the input is RMSNorm(x) · nw, folded in: each warp multiplies x · nw
// and sums x² over the whole vector as it streams (every warp reads all of x), then scales
// its sums by 1 / rms: no norm kernel before the lm_head.
template <int T, int U>
__global__ void __launch_bounds__(kWarps * 32)
    hgemv_kernel(const __half *__restrict__ w, const float *__restrict__ x, float *__restrict__ y, int out, int in,
                 int ntok, const float *__restrict__ nw, float eps) {
    BlockTrace bt = trace_begin();
    pdl_trigger();
    const int lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRows;
    int rows[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) rows[r] = min(row0 + r, out - 1);
    const float *xt[T];
#pragma unroll
    for (int t = 0; t < T; t++) xt[t] = x + (int64_t)min(t, ntok - 1) * in;
    float acc[kRows][T];
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = 0.f;
    const bool fold = T == 1 && nw != nullptr;
    float ss = 0.f;  // fold: Σ x² over the lane's inputs

    if (in % 8 == 0) {
        const int nvec = in / 8;
        const uint4 *wr[kRows];
#pragma unroll
        for (int r = 0; r < kRows; r++) wr[r] = reinterpret_cast<const uint4 *>(w + (int64_t)rows[r] * in);
        uint4 wv[U][kRows];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < kRows; r++) wv[u][r] = lane + 32 * u < nvec ? __ldcs(wr[r] + lane + 32 * u) : make_uint4(0, 0, 0, 0);
        pdl_wait();
        trace_wait(bt);
        for (int v0 = lane; v0 < nvec; v0 += 32 * U) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int v = v0 + 32 * u;
                if (v >= nvec) break;
                uint4 cw[kRows];
#pragma unroll
                for (int r = 0; r < kRows; r++) cw[r] = wv[u][r];
                if (v + 32 * U < nvec) {
#pragma unroll
                    for (int r = 0; r < kRows; r++) wv[u][r] = __ldcs(wr[r] + v + 32 * U);
                }
                float4 xa[T], xb[T];
#pragma unroll
                for (int t = 0; t < T; t++) {
                    xa[t] = reinterpret_cast<const float4 *>(xt[t])[2 * v];
                    xb[t] = reinterpret_cast<const float4 *>(xt[t])[2 * v + 1];
                }
                if (fold) {
                    const float4 ga = reinterpret_cast<const float4 *>(nw)[2 * v], gb = reinterpret_cast<const float4 *>(nw)[2 * v + 1];
                    float4 &a = xa[0], &b = xb[0];
                    ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
                    a.x *= ga.x, a.y *= ga.y, a.z *= ga.z, a.w *= ga.w, b.x *= gb.x, b.y *= gb.y, b.z *= gb.z, b.w *= gb.w;
                }
#pragma unroll
                for (int r = 0; r < kRows; r++) {
                    const __half2 *h = reinterpret_cast<const __half2 *>(&cw[r]);
                    const float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]), f2 = __half22float2(h[2]),
                                 f3 = __half22float2(h[3]);
#pragma unroll
                    for (int t = 0; t < T; t++) {
                        float s = acc[r][t];
                        s = fmaf(f0.x, xa[t].x, s), s = fmaf(f0.y, xa[t].y, s), s = fmaf(f1.x, xa[t].z, s),
                        s = fmaf(f1.y, xa[t].w, s);
                        s = fmaf(f2.x, xb[t].x, s), s = fmaf(f2.y, xb[t].y, s), s = fmaf(f3.x, xb[t].z, s),
                        s = fmaf(f3.y, xb[t].w, s);
                        acc[r][t] = s;
                    }
                }
            }
        }
    } else {
        pdl_wait();
        for (int i = lane; i < in; i += 32) {
            const float g = fold ? nw[i] : 1.f;
            if (fold) ss += xt[0][i] * xt[0][i];
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                const float wf = __half2float(w[(int64_t)rows[r] * in + i]);
#pragma unroll
                for (int t = 0; t < T; t++) acc[r][t] = fmaf(wf, xt[t][i] * g, acc[r][t]);
            }
        }
    }
    if (fold) {
        const float inv = 1.0f / sqrtf(warp_sum(ss) / in + eps);
#pragma unroll
        for (int r = 0; r < kRows; r++) acc[r][0] *= inv;
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
    if (lane < kRows * T) {
        const int r = lane % kRows, t = lane / kRows;
        float v = 0.f;
#pragma unroll
        for (int rr = 0; rr < kRows; rr++)
#pragma unroll
            for (int tt = 0; tt < T; tt++)
                if (rr == r && tt == t) v = acc[rr][tt];
        if (row0 + r < out && t < ntok) y[(int64_t)t * out + row0 + r] = v;
    }
    trace_end(bt, 6);
}

int hgemv_depth = -1; /* ring depth U (1, 2, 4; 4 is used up to T = 2, 2 up to T = 4); GPTQ_CUDA_HGEMV_DEPTH */

template <int T, int U>
cudaError_t hgemv_launch_u(const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, int ntok, const float *nw,
                           float eps, cudaStream_t s) {
    const int rows_per_block = kRows * kWarps;
    const unsigned grid = (unsigned)((out + rows_per_block - 1) / rows_per_block);
    return cu_launch(hgemv_kernel<T, U>, dim3(grid), dim3(kWarps * 32), 0, s, reinterpret_cast<const __half *>(w), x, y,
                     (int)out, (int)in, ntok, nw, eps);
}

template <int T>
cudaError_t hgemv_launch(const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, int ntok, cudaStream_t s,
                         const float *nw = nullptr, float eps = 0.f) {
    if (hgemv_depth < 0) {
        const char *e = getenv("GPTQ_CUDA_HGEMV_DEPTH");
        hgemv_depth = e && atoi(e) >= 1 ? atoi(e) : 4;
    }
    if (hgemv_depth >= 4 && T <= 2) return hgemv_launch_u<T, 4>(w, out, in, y, x, ntok, nw, eps, s);
    if (hgemv_depth >= 2 && T <= 4) return hgemv_launch_u<T, 2>(w, out, in, y, x, ntok, nw, eps, s);
    return hgemv_launch_u<T, 1>(w, out, in, y, x, ntok, nw, eps, s);
}

// One thread per (row, block quarter): 4 words of codes -> 4·NK fp16 weights in kernel order.
template <int BITS>
__global__ void dequant_kernel(const uint4 *__restrict__ qw, const __half *__restrict__ scales,
                               const uint8_t *__restrict__ zeros, const int32_t *__restrict__ chunk_group,
                               __half *__restrict__ w16, int64_t out, int row_blocks, int nchunks, int groups,
                               int64_t in_pad, int zero_base, int tiled) {
    constexpr int C = 16 / BITS;
    const int64_t n = out * row_blocks * 4;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / (row_blocks * 4);
        const int rem = (int)(i - row * row_blocks * 4), b = rem >> 2, q = rem & 3;
        const uint4 v = qw[cuq_block((int)row, b, row_blocks, tiled) * 4 + q];
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < C; j++) {
            const int c = b * C + j;
            if (c >= nchunks) break;
            const int g = chunk_group[c];
            const float s = __half2float(scales[row * groups + g]);
            const float z = (float)(zeros[row * groups + g] + zero_base);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int k = 2 * j + h;
                __half2 o[2];
                float f[4];
#pragma unroll
                for (int w = 0; w < 4; w++) f[w] = s * ((float)((words[w] >> (k * BITS)) & ((1u << BITS) - 1u)) - z);
                o[0] = __floats2half2_rn(f[0], f[1]);
                o[1] = __floats2half2_rn(f[2], f[3]);
                *reinterpret_cast<uint2 *>(w16 + row * in_pad + (int64_t)c * 32 + 16 * h + 4 * q) =
                    *reinterpret_cast<const uint2 *>(o);
            }
        }
    }
}

__global__ void acts_f16_kernel(const int32_t *__restrict__ perm, const float *__restrict__ x, __half *__restrict__ x16,
                                int64_t in, int64_t in_pad, int T) {
    const int64_t n = in_pad * T;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / in_pad, p = i - t * in_pad;
        const int src = perm ? perm[p] : (int)p;
        x16[i] = __float2half_rn(src >= 0 ? x[t * in + src] : 0.f);
    }
}

__global__ void f32_to_f16_kernel(__half *__restrict__ dst, const float *__restrict__ src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

}  // namespace

extern "C" void cuh_gemv_set_depth(int depth) {
    if (depth >= 1) hgemv_depth = depth;
}

extern "C" int cuh_gemv(const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, int T, cudaStream_t s) {
    if (T < 1 || T > CUQ_MAX_GEMV_T) return gptq_fail("cuh_gemv: %d tokens (1..%d)", T, CUQ_MAX_GEMV_T);
    cudaError_t e;
    if (T == 1) e = hgemv_launch<1>(w, out, in, y, x, T, s);
    else if (T == 2) e = hgemv_launch<2>(w, out, in, y, x, T, s);
    else if (T <= 4) e = hgemv_launch<4>(w, out, in, y, x, T, s);
    else e = hgemv_launch<8>(w, out, in, y, x, T, s);
    return cu_check(e, "fp16 GEMV");
}

extern "C" int cuh_gemv_norm(const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, const float *nw, float eps,
                             cudaStream_t s) {
    if (out < 1 || in < 1 || !nw)
        return gptq_fail("cuh_gemv_norm: %lld x %lld weights, norm weights %s", (long long)out, (long long)in, nw ? "given" : "missing");
    return cu_check(hgemv_launch<1>(w, out, in, y, x, 1, s, nw, eps), "fp16 GEMV with RMSNorm");
}

extern "C" int cuq_dequant_f16(const cuq_layer *L, uint16_t *w16, cudaStream_t s) {
    const unsigned grid = cu_grid(L->out * L->row_blocks * 4);
    const uint4 *qw = reinterpret_cast<const uint4 *>(L->qw);
    const __half *sc = reinterpret_cast<const __half *>(L->scales);
    __half *o = reinterpret_cast<__half *>(w16);
    const int rb = (int)L->row_blocks, nc = (int)L->nchunks, G = (int)L->groups;
    switch (L->bits) {
    case 2: dequant_kernel<2><<<grid, 256, 0, s>>>(qw, sc, L->zeros, L->chunk_group, o, L->out, rb, nc, G, L->in_pad, L->zero_base, L->tiled); break;
    case 3: dequant_kernel<3><<<grid, 256, 0, s>>>(qw, sc, L->zeros, L->chunk_group, o, L->out, rb, nc, G, L->in_pad, L->zero_base, L->tiled); break;
    case 4: dequant_kernel<4><<<grid, 256, 0, s>>>(qw, sc, L->zeros, L->chunk_group, o, L->out, rb, nc, G, L->in_pad, L->zero_base, L->tiled); break;
    case 8: dequant_kernel<8><<<grid, 256, 0, s>>>(qw, sc, L->zeros, L->chunk_group, o, L->out, rb, nc, G, L->in_pad, L->zero_base, L->tiled); break;
    default: return gptq_fail("cuq_dequant_f16: %d-bit weights are not supported", L->bits);
    }
    return cu_check(cudaGetLastError(), "dequantize to fp16");
}

extern "C" int cuq_acts_f16(const int32_t *perm, int64_t in, int64_t in_pad, uint16_t *x16, const float *x, int T,
                            cudaStream_t s) {
    acts_f16_kernel<<<cu_grid(in_pad * T), 256, 0, s>>>(perm, x, reinterpret_cast<__half *>(x16), in, in_pad, T);
    return cu_check(cudaGetLastError(), "activations to fp16");
}

extern "C" int cuk_f32_to_f16(uint16_t *dst, const float *src, int64_t n, cudaStream_t s) {
    f32_to_f16_kernel<<<cu_grid(n), 256, 0, s>>>(reinterpret_cast<__half *>(dst), src, n);
    return cu_check(cudaGetLastError(), "fp32 to fp16");
}

namespace {
__global__ void fill_random_kernel(uint32_t *p, int64_t n, uint64_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + (uint64_t)i * 0x9e3779b97f4a7c15ull;  // splitmix64
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        p[i] = (uint32_t)(z ^ (z >> 31));
    }
}
__global__ void fill_f16_kernel(__half *p, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + (uint64_t)i * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        p[i] = __float2half_rn(scale * ((float)(z >> 40) * (1.0f / 16777216.0f) - 0.5f));
    }
}
}  // namespace

extern "C" int cuk_fill_random(uint32_t *p, int64_t n, uint64_t seed, cudaStream_t s) {
    fill_random_kernel<<<cu_grid(n), 256, 0, s>>>(p, n, seed);
    return cu_check(cudaGetLastError(), "random fill");
}

extern "C" int cuk_fill_f16(uint16_t *p, int64_t n, uint64_t seed, float scale, cudaStream_t s) {
    fill_f16_kernel<<<cu_grid(n), 256, 0, s>>>(reinterpret_cast<__half *>(p), n, seed, scale);
    return cu_check(cudaGetLastError(), "random fp16 fill");
}

namespace {
__global__ void copy_kernel(uint4 *__restrict__ dst, const uint4 *__restrict__ src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        __stcs(dst + i, __ldcs(src + i));
}
}  // namespace

extern "C" int cuk_copy(void *dst, const void *src, int64_t bytes, cudaStream_t s) {
    if (bytes % 16) return gptq_fail("cuk_copy: %lld bytes are not a multiple of 16", (long long)bytes);
    int dev = 0, sms = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    copy_kernel<<<(unsigned)(sms * 8), 256, 0, s>>>(static_cast<uint4 *>(dst), static_cast<const uint4 *>(src), bytes / 16);
    return cu_check(cudaGetLastError(), "copy kernel");
}

CU_TRACE_BINDER(trace_bind_dense)
