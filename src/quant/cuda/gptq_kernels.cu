// Kernels of GPU GPTQ (quant/cuda/gptq_kernels.h): the column loop and its grid, Hessian
// preparation around cuSOLVER, and the element-wise steps of the calibration forward pass.
//
// The column loop reproduces gptq.c's arithmetic operation for operation: every rounding
// step that decides a code (x / scale, the fp16 scale, the error feedback) uses the _rn
// intrinsics, so nvcc cannot contract them into FMAs and the GPU computes the same fp32
// values as the CPU from the same inputs.  Codes then differ from the CPU's only where
// the inputs (the Cholesky factor, from cuSOLVER instead of LAPACK) differ in their last bits.
#include <cuda_fp16.h>
#include <math.h>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"
#include "quant/cuda/gptq_kernels.h"

namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kBlockWarps = 8;  // rows (warps) per thread block of the column loop
constexpr int kMseGrid = 100;   // quantizer.c's MSE_GRID
constexpr int kMseShrink = 80;  // quantizer.c's MSE_MAXSHRINK

int launched(const char *what) { return cu_check(cudaGetLastError(), what); }

__device__ __forceinline__ float warp_min(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(kFull, v, o));
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    return v;
}

// quantizer.c's fp16_scale: nearest fp16, kept finite and non-zero.
__device__ __forceinline__ float fp16_scale(float s) {
    float h = __half2float(__float2half_rn(s));
    if (h == 0.0f || !(h == h)) h = 0x1p-24f;
    if (isinf(h)) h = 65504.0f;
    return h;
}

// quantizer.c's grid_for_range.
__device__ __forceinline__ void grid_for_range(float xmin, float xmax, const gq_grid &g, int maxq, float *scale,
                                               int *zero) {
    const float s = fp16_scale(__fdiv_rn(__fsub_rn(xmax, xmin), (float)maxq));
    int z;
    if (g.sym) {
        z = (maxq + 1) / 2;
    } else {
        float zf = rintf(__fdiv_rn(-xmin, s));
        if (zf < 0.0f) zf = 0.0f;
        if (zf > (float)maxq) zf = (float)maxq;
        z = (int)zf;
        if (g.v1_zero && z < 1) z = 1;
    }
    *scale = s;
    *zero = z;
}

// quantizer.h's quant_one.
__device__ __forceinline__ float quant_one(float x, float scale, int zero, int maxq, int *code) {
    const float z = (float)zero;
    float q = __fadd_rn(rintf(__fdiv_rn(x, scale)), z);
    if (q < 0.0f) q = 0.0f;
    if (q > (float)maxq) q = (float)maxq;
    if (!(q == q)) q = z;
    *code = (int)q;
    return __fmul_rn(scale, __fsub_rn(q, z));
}

__device__ __forceinline__ float read_masked(const float *x, const unsigned char *dead, int64_t i) {
    return dead && dead[i] ? 0.0f : x[i];
}

// quantizer.c's quant_row_params for one segment x (len values, dead-masked), by a whole warp;
// every lane returns the same grid.
__device__ void warp_row_params(const float *x, const unsigned char *dead, int64_t len, const gq_grid &g,
                                float *scale, int *zero) {
    const int lane = threadIdx.x & 31, maxq = (1 << g.bits) - 1;
    float xmin = 0.0f, xmax = 0.0f;
    for (int64_t i = lane; i < len; i += 32) {
        const float v = read_masked(x, dead, i);
        xmin = fminf(xmin, v);
        xmax = fmaxf(xmax, v);
    }
    xmin = warp_min(xmin);
    xmax = warp_max(xmax);
    if (g.sym) {
        const float a = fabsf(xmin);
        if (a > xmax) xmax = a;
        if (xmin < 0.0f) xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    grid_for_range(xmin, xmax, g, maxq, scale, zero);
    if (!g.mse) return;
    double best = INFINITY;
    for (int i = 0; i < kMseShrink; i++) {
        const float p = __fsub_rn(1.0f, __fdiv_rn((float)i, (float)kMseGrid));
        float s1;
        int z1, code;
        grid_for_range(__fmul_rn(p, xmin), __fmul_rn(p, xmax), g, maxq, &s1, &z1);
        double err = 0;
        for (int64_t k = lane; k < len; k += 32) {
            const float v = read_masked(x, dead, k);
            const float d = __fsub_rn(quant_one(v, s1, z1, maxq, &code), v);
            err += (double)__fmul_rn(d, d);
        }
        err = warp_sum(err);
        if (err < best) {
            best = err;
            *scale = s1;
            *zero = z1;
        }
    }
}

__global__ void find_params_kernel(const float *x, const unsigned char *dead, int64_t out, int64_t n, int64_t gs,
                                   int64_t groups, gq_grid g, float *scales, int32_t *zeros) {
    const int64_t wid = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (wid >= out * groups) return;
    const int64_t r = wid % out, grp = wid / out, c0 = grp * gs, len = min(gs, n - c0);
    float s;
    int z;
    warp_row_params(x + r * n + c0, dead ? dead + c0 : nullptr, len, g, &s, &z);
    if ((threadIdx.x & 31) == 0) scales[grp * out + r] = s, zeros[grp * out + r] = z;
}

// One lazy-update block of the column loop (see the header and gptq.c's block_rows).
// Lane l holds block columns l, l + 32, ... of its row (v[]); the Hinv block U[i1:, i1:]
// sits in shared memory.  Every lane quantizes every column redundantly (the broadcast
// value is the same), so no further communication is needed.
template <int NS>
__global__ void __launch_bounds__(kBlockWarps * 32)
    block_kernel(const float *__restrict__ Wp, const float *__restrict__ U, int64_t out, int64_t n, int64_t i1, int cnt,
                 const int32_t *__restrict__ perm, float *__restrict__ E, uint8_t *__restrict__ codes,
                 float *__restrict__ wq, float *__restrict__ scales, int32_t *__restrict__ zeros,
                 double *__restrict__ rowloss, gq_grid g, int grouped, int is_static, int64_t gs) {
    extern __shared__ float Us[];  // (cnt, cnt)
    for (int idx = threadIdx.x; idx < cnt * cnt; idx += blockDim.x) {
        const int a = idx / cnt, b = idx - a * cnt;
        Us[idx] = U[(i1 + a) * n + i1 + b];
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, maxq = (1 << g.bits) - 1;
    const int64_t r = (int64_t)blockIdx.x * kBlockWarps + (threadIdx.x >> 5);
    if (r >= out) return;
    const float *wr = Wp + r * n;
    float v[NS];
#pragma unroll
    for (int s = 0; s < NS; s++) {
        const int k = s * 32 + lane;
        v[s] = k < cnt ? wr[i1 + k] : 0.0f;
    }
    float scale = 0.0f;
    int zero = 0;
    if (!grouped) {
        scale = scales[r], zero = zeros[r];
    } else if (!is_static && i1 % gs != 0) {
        // a group that started in an earlier block (blocks narrower than groups)
        scale = scales[(i1 / gs) * out + r], zero = zeros[(i1 / gs) * out + r];
    }
    double loss = 0.0;
#pragma unroll
    for (int s = 0; s < NS; s++) {
        for (int ii = 0; ii < 32; ii++) {
            const int i = s * 32 + ii;
            if (i >= cnt) break;
            const int64_t j = i1 + i, oc = perm[j];
            if (is_static) {
                const int64_t grp = oc / gs;
                scale = scales[grp * out + r], zero = zeros[grp * out + r];
            } else if (grouped && j % gs == 0) {
                // the reference reads W here, which lacks this block's earlier updates
                const int64_t grp = j / gs;
                warp_row_params(wr + j, nullptr, min(gs, n - j), g, &scale, &zero);
                if (lane == 0) scales[grp * out + r] = scale, zeros[grp * out + r] = zero;
            }
            const float x = __shfl_sync(kFull, v[s], ii);
            int code;
            const float dq = quant_one(x, scale, zero, maxq, &code);
            const float d = Us[i * cnt + i];
            const float diff = __fsub_rn(x, dq);
            loss += (double)__fdiv_rn(__fmul_rn(diff, diff), __fmul_rn(d, d));
            const float err = __fdiv_rn(diff, d);
            if (lane == ii) {
                codes[r * n + oc] = (uint8_t)code;
                wq[r * n + oc] = dq;
            }
            const float *ur = Us + i * cnt;
#pragma unroll
            for (int t = 0; t < NS; t++) {
                const int k = t * 32 + lane;
                if (k > i && k < cnt) v[t] = __fsub_rn(v[t], __fmul_rn(err, ur[k]));
            }
            if (lane == ii) v[s] = err;
        }
    }
#pragma unroll
    for (int s = 0; s < NS; s++) {
        const int k = s * 32 + lane;
        if (k < cnt) E[r * cnt + k] = v[s];
    }
    if (lane == 0) rowloss[r] += loss;
}

__global__ void build_reversed_kernel(double *D, const float *h, const float *diag, const int32_t *perm, int64_t n,
                                      double lambda) {
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, a = blockIdx.y;
    if (b >= n) return;
    const int64_t pi = perm[n - 1 - a];
    D[a * n + b] = a == b ? (double)diag[pi] + lambda : (double)h[pi * n + perm[n - 1 - b]];
}

__global__ void extract_u_kernel(float *U, const double *Linv, int64_t n) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
    if (j >= n) return;
    U[i * n + j] = j < i ? 0.0f : (float)Linv[(n - 1 - i) * n + (n - 1 - j)];
}

__global__ void diag_check_kernel(const float *h, int64_t n, float *diag, int *bad) {
    int cnt = 0;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n * n; k += (int64_t)gridDim.x * blockDim.x) {
        const float v = h[k];
        if (!isfinite(v)) cnt++;
        if (k % (n + 1) == 0) diag[k / (n + 1)] = v;
    }
    if (cnt) atomicAdd(bad, cnt);
}

__global__ void permute_kernel(float *Wp, const float *w, const int32_t *perm, const unsigned char *dead, int64_t out,
                               int64_t n) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < out * n; k += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = k / n, p = perm[k - r * n];
        Wp[k] = dead[p] ? 0.0f : w[r * n + p];
    }
}

__device__ void block_add(double v, double *dst) {
    __shared__ double part[32];
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) part[wid] = v;
    __syncthreads();
    if (wid == 0) {
        v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0;
        v = warp_sum(v);
        if (lane == 0 && v != 0.0) atomicAdd(dst, v);
    }
}

__global__ void error_sums_kernel(const float *w, const float *wq, const unsigned char *dead, const double *rowloss,
                                  int64_t out, int64_t n, double *sums) {
    double dz = 0, dw = 0, ls = 0;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < out * n; k += (int64_t)gridDim.x * blockDim.x) {
        const float wv = w[k], q = wq[k];
        const double a = (double)(dead[k % n] ? 0.0f : wv) - (double)q;
        dz += a * a;
        const float e = wv - q;
        dw += (double)e * (double)e;
        if (k < out) ls += rowloss[k];
    }
    block_add(dz, sums);
    block_add(dw, sums + 1);
    block_add(ls, sums + 2);
}

__global__ void dot_kernel(const float *a, const float *b, int64_t n, double *acc) {
    double s = 0;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
        s += (double)a[k] * (double)b[k];
    block_add(s, acc);
}

__global__ void hessian_finalize_kernel(float *h, int64_t n, float scale) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
    if (j < i || j >= n) return;
    const float v = h[i * n + j] * scale;
    h[i * n + j] = v;
    h[j * n + i] = v;
}

// ---- forward pass ----

__global__ void to_f32_kernel(float *dst, const void *src, int dtype, int64_t n) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
        if (dtype == 0) dst[k] = static_cast<const float *>(src)[k];
        else if (dtype == 1) dst[k] = __half2float(static_cast<const __half *>(src)[k]);
        else dst[k] = __uint_as_float((uint32_t) static_cast<const uint16_t *>(src)[k] << 16);
    }
}

__global__ void f32_to_f16_kernel(__half *dst, const float *src, int64_t n) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
        dst[k] = __float2half_rn(src[k]);
}

// Activations are stored as T: __half (the default, tensor-core GEMMs) or float (fp32 mode).
__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(__half *p, float v) { *p = __float2half_rn(v); }

template <typename T>
__global__ void rmsnorm_kernel(T *out, const float *x, const float *w, int dim, float eps) {
    const float *xr = x + (int64_t)blockIdx.x * dim;
    T *orow = out + (int64_t)blockIdx.x * dim;
    float ss = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(kFull, ss, o);
    __shared__ float part[32];
    __shared__ float inv_s;
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) part[wid] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0;
        for (int k = 0; k < (int)(blockDim.x >> 5); k++) t += part[k];
        inv_s = 1.0f / sqrtf(t / dim + eps);
    }
    __syncthreads();
    const float inv = inv_s;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) store(orow + i, w[i] * (xr[i] * inv));
}

__global__ void add_bias_kernel(float *y, const float *b, int64_t rows, int64_t out) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < rows * out; k += (int64_t)gridDim.x * blockDim.x)
        y[k] += b[k % out];
}

// Thread (t, h, i): pair (i, i + half) of query head h at position t, and of its kv head.
template <typename T>
__global__ void rope_expand_kernel(const float *q, const float *k, const float *v, const float *inv_freq, T *q16, T *k16,
                                   T *v16, int nh, int nkv, int hd) {
    const int half = hd / 2, t = blockIdx.y;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= nh * half) return;
    const int h = idx / half, i = idx - h * half, kvh = h / (nh / nkv);
    const float a = (float)t * inv_freq[i], c = cosf(a), s = sinf(a);
    const int64_t qo = (int64_t)t * nh * hd + (int64_t)h * hd, ko = (int64_t)t * nkv * hd + (int64_t)kvh * hd;
    float x0 = q[qo + i], x1 = q[qo + i + half];
    store(q16 + qo + i, x0 * c - x1 * s);
    store(q16 + qo + i + half, x1 * c + x0 * s);
    x0 = k[ko + i], x1 = k[ko + i + half];
    store(k16 + qo + i, x0 * c - x1 * s);
    store(k16 + qo + i + half, x1 * c + x0 * s);
    store(v16 + qo + i, v[ko + i]);
    store(v16 + qo + i + half, v[ko + i + half]);
}

// One block per (head, query row).
template <typename T>
__global__ void causal_softmax_kernel(T *P, const float *scores, int S) {
    const int64_t row = blockIdx.x;
    const int t = (int)(row % S), valid = t + 1;
    const float *sr = scores + row * S;
    T *pr = P + row * S;
    __shared__ float part[32];
    __shared__ float bcast;
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float mx = -INFINITY;
    for (int p = threadIdx.x; p < valid; p += blockDim.x) mx = fmaxf(mx, sr[p]);
    mx = warp_max(mx);
    if (lane == 0) part[wid] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = -INFINITY;
        for (int k = 0; k < nw; k++) m = fmaxf(m, part[k]);
        bcast = m;
    }
    __syncthreads();
    mx = bcast;
    float sum = 0;
    for (int p = threadIdx.x; p < valid; p += blockDim.x) sum += expf(sr[p] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(kFull, sum, o);
    __syncthreads();
    if (lane == 0) part[wid] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0;
        for (int k = 0; k < nw; k++) s += part[k];
        bcast = 1.0f / s;
    }
    __syncthreads();
    const float inv = bcast;
    for (int p = threadIdx.x; p < S; p += blockDim.x) store(pr + p, p < valid ? expf(sr[p] - mx) * inv : 0.0f);
}

template <typename T>
__global__ void silu_mul_kernel(T *act, const float *g, const float *u, int64_t n) {
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x) {
        const float x = g[k];
        store(act + k, x / (1.0f + expf(-x)) * u[k]);
    }
}

__global__ void count_nonfinite_kernel(const float *x, int64_t n, int *bad) {
    int cnt = 0;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (int64_t)gridDim.x * blockDim.x)
        if (!isfinite(x[k])) cnt++;
    if (cnt) atomicAdd(bad, cnt);
}

dim3 grid2(int64_t cols, int64_t rows) { return dim3((unsigned)((cols + 255) / 256), (unsigned)rows); }

template <int NS>
int launch_block(const float *Wp, const float *U, int64_t out, int64_t n, int64_t i1, int cnt, const int32_t *perm,
                 float *E, uint8_t *codes, float *wq, float *scales, int32_t *zeros, double *rowloss, gq_grid g,
                 int grouped, int is_static, int64_t gs, cudaStream_t s) {
    static bool attr_set = false;
    if (!attr_set) {
        if (cu_check(cudaFuncSetAttribute(block_kernel<NS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)(sizeof(float) * GQ_MAX_BLOCK * GQ_MAX_BLOCK)),
                     "gptq column loop: shared memory"))
            return -1;
        attr_set = true;
    }
    const unsigned blocks = (unsigned)((out + kBlockWarps - 1) / kBlockWarps);
    block_kernel<NS><<<blocks, kBlockWarps * 32, sizeof(float) * cnt * cnt, s>>>(
        Wp, U, out, n, i1, cnt, perm, E, codes, wq, scales, zeros, rowloss, g, grouped, is_static, gs);
    return launched("gptq column loop");
}

}  // namespace

extern "C" {

int gq_build_reversed(double *D, const float *h, const float *diag, const int32_t *perm, int64_t n, double lambda,
                      cudaStream_t s) {
    build_reversed_kernel<<<grid2(n, n), 256, 0, s>>>(D, h, diag, perm, n, lambda);
    return launched("gptq: reversed Hessian");
}

int gq_extract_u(float *U, const double *Linv, int64_t n, cudaStream_t s) {
    extract_u_kernel<<<grid2(n, n), 256, 0, s>>>(U, Linv, n);
    return launched("gptq: Hinv factor");
}

int gq_diag_check(const float *h, int64_t n, float *diag, int *bad, cudaStream_t s) {
    diag_check_kernel<<<cu_grid(n * n), 256, 0, s>>>(h, n, diag, bad);
    return launched("gptq: Hessian check");
}

int gq_permute(float *Wp, const float *w, const int32_t *perm, const unsigned char *dead, int64_t out, int64_t n,
               cudaStream_t s) {
    permute_kernel<<<cu_grid(out * n), 256, 0, s>>>(Wp, w, perm, dead, out, n);
    return launched("gptq: permute weight");
}

int gq_find_params(const float *x, const unsigned char *dead, int64_t out, int64_t n, int64_t gs, int64_t groups,
                   gq_grid g, float *scales, int32_t *zeros, cudaStream_t s) {
    const int64_t threads = out * groups * 32;
    find_params_kernel<<<(unsigned)((threads + 255) / 256), 256, 0, s>>>(x, dead, out, n, gs, groups, g, scales, zeros);
    return launched("gptq: group grids");
}

int gq_block(const float *Wp, const float *U, int64_t out, int64_t n, int64_t i1, int cnt, const int32_t *perm,
             float *E, uint8_t *codes, float *wq, float *scales, int32_t *zeros, double *rowloss, gq_grid g, int grouped,
             int is_static, int64_t gs, cudaStream_t s) {
    if (cnt < 1 || cnt > GQ_MAX_BLOCK) return gptq_fail("gptq column loop: block of %d columns (1..%d)", cnt, GQ_MAX_BLOCK);
    switch ((cnt + 31) / 32) {
    case 1: return launch_block<1>(Wp, U, out, n, i1, cnt, perm, E, codes, wq, scales, zeros, rowloss, g, grouped, is_static, gs, s);
    case 2: return launch_block<2>(Wp, U, out, n, i1, cnt, perm, E, codes, wq, scales, zeros, rowloss, g, grouped, is_static, gs, s);
    case 3: return launch_block<3>(Wp, U, out, n, i1, cnt, perm, E, codes, wq, scales, zeros, rowloss, g, grouped, is_static, gs, s);
    default: return launch_block<4>(Wp, U, out, n, i1, cnt, perm, E, codes, wq, scales, zeros, rowloss, g, grouped, is_static, gs, s);
    }
}

int gq_error_sums(const float *w, const float *wq, const unsigned char *dead, const double *rowloss, int64_t out,
                  int64_t n, double *sums, cudaStream_t s) {
    error_sums_kernel<<<cu_grid(out * n), 256, 0, s>>>(w, wq, dead, rowloss, out, n, sums);
    return launched("gptq: error sums");
}

int gq_dot(const float *a, const float *b, int64_t n, double *acc, cudaStream_t s) {
    dot_kernel<<<cu_grid(n), 256, 0, s>>>(a, b, n, acc);
    return launched("gptq: dot");
}

int gq_hessian_finalize(float *h, int64_t n, float scale, cudaStream_t s) {
    hessian_finalize_kernel<<<grid2(n, n), 256, 0, s>>>(h, n, scale);
    return launched("gptq: Hessian finalize");
}

int gq_to_f32(float *dst, const void *src, int dtype, int64_t n, cudaStream_t s) {
    to_f32_kernel<<<cu_grid(n), 256, 0, s>>>(dst, src, dtype, n);
    return launched("gptq: weight to fp32");
}

int gq_f32_to_f16(uint16_t *dst, const float *src, int64_t n, cudaStream_t s) {
    f32_to_f16_kernel<<<cu_grid(n), 256, 0, s>>>(reinterpret_cast<__half *>(dst), src, n);
    return launched("gptq: fp32 to fp16");
}

int gq_rmsnorm(void *out, int f32, const float *x, const float *w, int64_t rows, int dim, float eps, cudaStream_t s) {
    if (rows <= 0) return 0;
    if (f32) rmsnorm_kernel<<<(unsigned)rows, 256, 0, s>>>(static_cast<float *>(out), x, w, dim, eps);
    else rmsnorm_kernel<<<(unsigned)rows, 256, 0, s>>>(static_cast<__half *>(out), x, w, dim, eps);
    return launched("gptq: rmsnorm");
}

int gq_add_bias(float *y, const float *b, int64_t rows, int64_t out, cudaStream_t s) {
    add_bias_kernel<<<cu_grid(rows * out), 256, 0, s>>>(y, b, rows, out);
    return launched("gptq: bias");
}

int gq_rope_expand(const float *q, const float *k, const float *v, const float *inv_freq, void *q16, void *k16, void *v16,
                   int f32, int S, int nh, int nkv, int hd, cudaStream_t s) {
    const int pairs = nh * (hd / 2);
    const dim3 grid((unsigned)((pairs + 127) / 128), (unsigned)S);
    if (f32)
        rope_expand_kernel<<<grid, 128, 0, s>>>(q, k, v, inv_freq, static_cast<float *>(q16), static_cast<float *>(k16),
                                                static_cast<float *>(v16), nh, nkv, hd);
    else
        rope_expand_kernel<<<grid, 128, 0, s>>>(q, k, v, inv_freq, static_cast<__half *>(q16), static_cast<__half *>(k16),
                                                static_cast<__half *>(v16), nh, nkv, hd);
    return launched("gptq: rope");
}

int gq_causal_softmax(void *P, int f32, const float *scores, int nh, int S, cudaStream_t s) {
    if (f32) causal_softmax_kernel<<<(unsigned)((int64_t)nh * S), 256, 0, s>>>(static_cast<float *>(P), scores, S);
    else causal_softmax_kernel<<<(unsigned)((int64_t)nh * S), 256, 0, s>>>(static_cast<__half *>(P), scores, S);
    return launched("gptq: softmax");
}

int gq_silu_mul(void *act, int f32, const float *g, const float *u, int64_t n, cudaStream_t s) {
    if (f32) silu_mul_kernel<<<cu_grid(n), 256, 0, s>>>(static_cast<float *>(act), g, u, n);
    else silu_mul_kernel<<<cu_grid(n), 256, 0, s>>>(static_cast<__half *>(act), g, u, n);
    return launched("gptq: silu");
}

int gq_count_nonfinite(const float *x, int64_t n, int *bad, cudaStream_t s) {
    count_nonfinite_kernel<<<cu_grid(n), 256, 0, s>>>(x, n, bad);
    return launched("gptq: finite check");
}

}  // extern "C"
