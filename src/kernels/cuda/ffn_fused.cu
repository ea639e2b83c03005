// The feed-forward block of one-token decode in one kernel: RMSNorm (deferred), gate and
// up, SwiGLU, down_proj and the residual add, with no grid-wide dependency between gate/up
// and down_proj.
//
// Why: as separate launches (the gate/up pair, then down_proj), down_proj's blocks wait for
// the pair's last block (its tail spreads over ~4 µs on the H100) and then ramp up, with the
// DRAM idling in between (docs/PERFORMANCE.md, session 10).  But down_proj's k-block u of
// 128 inputs needs only the 128 hidden features that gate/up tiles 8u .. 8u + 7 produce.
// So kFfCluster (3) thread blocks take such a unit u:
//   - before the dependency wait each warp requests its first codes;
//   - after it, every block makes the normed input's B fragments from the residual x
//     itself, deferred (x · w times an estimate of 1 / rms, the sums scaled at the end, as
//     the pair's deferred norm: cuq.h cuq_frag_norm), and counts itself in ctr[0];
//   - warp w of rank r multiplies pair-tile 8u + w (gate and up) over k-blocks r, r + 3,
//     ... (11 or 10 of 32 for a 4096-wide input), so the three blocks share each tile;
//   - the three blocks' partial sums meet through global memory (each block writes its
//     own, counts itself in the unit's counter and waits for the other two; then adds the
//     three in rank order: the same h in every block), SwiGLU gives the unit's 128
//     features, which each block makes the B fragments of down_proj's k-block u (a thread
//     block cluster would exchange them in shared memory, but 86 clusters of 3 do not all
//     fit the H100 at once);
//   - warp w of rank r multiplies down_proj's tiles r·8 + w + 24 m (16 rows each, one
//     step of k-block u), two at a time, and adds the 16-row partial sums into x with
//     vector atomics (red.global.add.v4.f32: hid / 128 units add into every row, so x's
//     last bits depend on their order, as the fused attention's o_proj).
// The warps' register rings run on from gate/up's codes into down_proj's, so the codes
// stream without a gap.  Blocks add into x only after every block has read x (ctr[0]
// reaching the grid; the last block to finish resets the counters for the next launch):
// the whole grid is resident at once (checked at launch), so no wait can deadlock.
// The next layer's q/k/v then normalizes x itself (a deferred fold).
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/frag_mma.cuh"
#include "kernels/cuda/model_kernels.h"

namespace {

using namespace frag;

constexpr int kFfCluster = 3;  // blocks per unit of 128 hidden features
constexpr int kFfPart = 256;   // floats of a block's partial sums: (warp, gate / up, row half, g)
constexpr int kFfWarps = 8;    // warps per block: one per gate/up tile of the unit
constexpr int kFfMaxUnits = 4; // fragment units (8 inputs) of the norm per thread: dim <= 8192

struct FfnArgs {
    const uint4 *gq, *uq, *dq;    // codes, tile layout: gate, up (row_blocks = dim / 128), down (hid / 128)
    const uint8_t *gm, *um, *dm;  // their records (frag_mma.cuh)
    int zg, zu, zd;               // zero bases
    float *x;                     // (dim) residual: read for the norm, then += down_proj's products
    const float *nw;              // (dim) the norm's weights
    float eps;
    const float *rsc;             // the fragments are made times *rsc (an estimate of 1 / rms; NULL: 1)
    float *rout;                  // non-NULL: 1 / rms stored there (by block 0)
    int dim, hid;
    unsigned *ctr;                // [0] blocks that have read x, [1] blocks done, [2 + u] blocks of unit u with sums out
    float *part;                  // (units, kFfCluster, kFfPart) the blocks' partial sums
};

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// x · w · sc as the B fragments of token 0 (fragment units, frag_mma.cuh: norm_unit) into
// sm; returns this thread's share of Σx².  All of a thread's loads are issued together.
__device__ __forceinline__ float ffn_norm_smem(const FfnArgs &A, uint4 *sm, float sc) {
    const int units = A.dim >> 3;
    const float4 *x4 = reinterpret_cast<const float4 *>(A.x), *w4 = reinterpret_cast<const float4 *>(A.nw);
    float4 xa[kFfMaxUnits], xb[kFfMaxUnits], wa[kFfMaxUnits], wb[kFfMaxUnits];
#pragma unroll
    for (int k = 0; k < kFfMaxUnits; k++) {
        const int u = threadIdx.x + k * blockDim.x;
        if (u < units) {
            const int q = norm_unit_pos(u) >> 2;
            xa[k] = __ldcg(x4 + q), xb[k] = __ldcg(x4 + q + 16), wa[k] = __ldg(w4 + q), wb[k] = __ldg(w4 + q + 16);
        }
    }
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < kFfMaxUnits; k++) {
        const int u = threadIdx.x + k * blockDim.x;
        if (u < units) {
            ss += norm_ss(xa[k], xb[k]);
            sm[u] = norm_unit(xa[k], xb[k], wa[k], wb[k], sc);
        }
    }
    return ss;
}

// The B fragments of token 0 (lanes g = 0; the others zero) of k-block b of fragments f.
__device__ __forceinline__ void token0_frags(const uint4 *f, int b, int g, int t, uint32_t (&bx)[4][4]) {
#pragma unroll
    for (int p = 0; p < 4; p++) {
        const uint4 v = g == 0 ? f[b * 16 + t * 4 + p] : make_uint4(0, 0, 0, 0);
        bx[p][0] = v.x, bx[p][1] = v.y, bx[p][2] = v.z, bx[p][3] = v.w;
    }
}

__global__ void __launch_bounds__(kFfWarps * 32, 2) ffn_fused_kernel(const __grid_constant__ FfnArgs A) {
    BlockTrace bt = trace_begin();
    pdl_trigger();
    extern __shared__ uint4 xsm[];                 // (dim / 8) the normed input's fragment units (token 0)
    __shared__ __align__(16) uint32_t hfw[64];     // the unit's 128 features as B fragments (token 0)
    __shared__ float red_ss[kFfWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int u = (int)blockIdx.x / kFfCluster, r = (int)blockIdx.x % kFfCluster;
    const int rbi = A.dim >> 7, rbh = A.hid >> 7, dtiles = A.dim >> 4;
    // gate/up: pair-tile 8u + warp, k-blocks r + 3s (s < n1)
    const int tile = 8 * u + warp;
    const uint4 *qg = A.gq + ((int64_t)tile * rbi * 16 + g) * 4 + t, *qu = A.uq + ((int64_t)tile * rbi * 16 + g) * 4 + t;
    const uint8_t *mg = A.gm + tile * meta_tile_bytes(rbi), *mu = A.um + tile * meta_tile_bytes(rbi);
    const int n1 = (rbi - r + kFfCluster - 1) / kFfCluster;
    // down_proj: tiles d0 + 24 m (m < md), two per step, k-block u
    const int d0 = r * kFfWarps + warp, md = d0 < dtiles ? (dtiles - d0 + kFfCluster * kFfWarps - 1) / (kFfCluster * kFfWarps) : 0;
    const int ns = n1 + (md + 1) / 2;
    auto down_tile = [&](int q, int k) {  // tile of step q's operand k (the last odd one repeats its first)
        const int m = 2 * q + k < md ? 2 * q + k : 2 * q;
        return d0 + kFfCluster * kFfWarps * m;
    };
    auto load = [&](int s, Step (&st)[2]) {
        if (s < n1) {
            const int kb = r + kFfCluster * s;
            st[0] = load_step(qg, mg, rbi, kb, g), st[1] = load_step(qu, mu, rbi, kb, g);
        } else {
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const int dt = down_tile(s - n1, k);
                st[k] = load_step(A.dq + ((int64_t)dt * rbh * 16 + g) * 4 + t, A.dm + dt * meta_tile_bytes(rbh), rbh, u, g);
            }
        }
    };
    Step cur[2];
    if (ns > 0) load(0, cur);
    pdl_wait();
    trace_wait(bt);
    const float sc = A.rsc ? __ldcg(A.rsc) : 1.f;
    const float ss = ffn_norm_smem(A, xsm, sc);
    __syncthreads();  // xsm; this block's reads of x are done
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(&A.ctr[0], 1u);
    }
    const int zgu[2] = {A.zg, A.zu}, zdd[2] = {A.zd, A.zd};
    float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    uint32_t bh[4][4];  // down_proj's B fragments (the unit's features)
    unsigned seen = 0;  // ctr[0] as last read (thread 0)
    for (int s = 0;; s++) {
        if (s == n1) {  // gate/up done in every warp of the block (n1 is the block's): SwiGLU
            float *mine = A.part + (int64_t)blockIdx.x * kFfPart + warp * 32;  // (gate / up, row half, g)
            if (t == 0) {
#pragma unroll
                for (int k = 0; k < 2; k++) mine[k * 16 + g] = acc[k][0], mine[k * 16 + 8 + g] = acc[k][2];
            }
            const float w = warp_sum(ss);
            if (lane == 0) red_ss[warp] = w;
            __syncthreads();  // the block's sums are out
            if (threadIdx.x == 0) {
                seen = ld_acquire(&A.ctr[0]);  // asked for now, needed before the first add
                __threadfence();
                atomicAdd(&A.ctr[2 + u], 1u);
                while (ld_acquire(&A.ctr[2 + u]) < kFfCluster) {
                }
            }
            __syncthreads();  // the unit's three blocks' sums are out
            float tot = 0.f;
            for (int k = 0; k < kFfWarps; k++) tot += red_ss[k];
            const float inv = 1.0f / sqrtf(tot / (float)A.dim + A.eps), scale = inv / sc;
            if (A.rout && blockIdx.x == 0 && threadIdx.x == 0) *A.rout = inv;
            if (lane < 16) {  // warp w's tile: rows 16 w + g (lanes 0-7) and 16 w + 8 + g (lanes 8-15)
                const int gg = lane & 7, half = lane >> 3;
                float gs = 0.f, us = 0.f;
#pragma unroll
                for (int rr = 0; rr < kFfCluster; rr++) {
                    const float *p = A.part + (int64_t)(u * kFfCluster + rr) * kFfPart + warp * 32 + half * 8 + gg;
                    gs += __ldcg(p), us += __ldcg(p + 16);
                }
                const float a = gs * scale, b = us * scale;
                const float h = a / (1.0f + expf(-a)) * b;  // as cuk_silu_mul
                reinterpret_cast<__half *>(hfw)[cuq_frag_half(0, 16 * warp + 8 * half + gg, 1)] = __float2half_rn(h);
            }
            __syncthreads();  // hfw
            token0_frags(reinterpret_cast<const uint4 *>(hfw), 0, g, t, bh);
            if (threadIdx.x == 0)
                while (seen < gridDim.x) seen = ld_acquire(&A.ctr[0]);  // no add into x before every block read it
            __syncthreads();
        }
        if (s >= ns) break;
        Step nxt[2];
        if (s + 1 < ns) load(s + 1, nxt);
        if (s < n1) {
            uint32_t bx[4][4];
            token0_frags(xsm, r + kFfCluster * s, g, t, bx);
            steps_mma<2>(acc, cur, bx, zgu);
        } else {
            float d[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
            steps_mma<2>(d, cur, bh, zdd);
            const int q = s - n1;
#pragma unroll
            for (int k = 0; k < 2; k++) {
                if (k == 1 && 2 * q + 1 >= md) break;  // the repeated tile: loaded and multiplied, not added
                // token 0 of rows g (d[k][0]) and g + 8 (d[k][2]) is in lanes t = 0; lanes g = 0
                // and 4 gather four rows each and add them with one vector atomic per half
                float ra[4], rb[4];
#pragma unroll
                for (int v = 0; v < 4; v++) {
                    ra[v] = __shfl_sync(0xffffffffu, d[k][0], lane + 4 * v);
                    rb[v] = __shfl_sync(0xffffffffu, d[k][2], lane + 4 * v);
                }
                if (t == 0 && (g & 3) == 0) {
                    const int row = down_tile(q, k) * 16 + g;
                    red_add4(A.x + row, ra);
                    red_add4(A.x + row + 8, rb);
                }
            }
        }
#pragma unroll
        for (int k = 0; k < 2; k++) cur[k] = nxt[k];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&A.ctr[1], 1u) == gridDim.x - 1) {  // the last block: every other has passed its waits
            const int units = (int)gridDim.x / kFfCluster;
            for (int k = 0; k < 2 + units; k++) A.ctr[k] = 0;
            __threadfence();
        }
    }
    trace_end(bt, 10);
}

int ffn_mode = -1;  // GPTQ_CUDA_FFN_FUSED=0: off (default on where it applies)

// The scratch's counters (2 + units unsigned), rounded up to 16 bytes; the partial sums after them.
size_t ffn_counter_bytes(int64_t hid) { return (sizeof(unsigned) * (size_t)(2 + hid / 128) + 15) / 16 * 16; }

}  // namespace

CU_TRACE_BINDER(trace_bind_ffn)

extern "C" void cuk_ffn_fused_set(int on) { ffn_mode = on < 0 ? -1 : on != 0; }

extern "C" int cuk_ffn_fused_ok(const cuq_layer *gate, const cuq_layer *up, const cuq_layer *down) {
    if (ffn_mode < 0) {
        const char *e = getenv("GPTQ_CUDA_FFN_FUSED");
        ffn_mode = !(e && strcmp(e, "0") == 0);
    }
    if (!ffn_mode || !cuq_frag_ok(gate) || !cuq_frag_ok(up) || !cuq_frag_ok(down) || gate->perm || up->perm || down->perm)
        return 0;
    const int64_t dim = gate->in_pad, hid = gate->out;
    if (gate->in != dim || up->in != dim || up->out != hid || down->in != hid || down->in_pad != hid || down->out != dim ||
        dim % 128 || hid % 128 || dim > 8 * kFfMaxUnits * kFfWarps * 32)
        return 0;
    // every block resident at once (the blocks wait for each other)
    static int64_t checked_dim = -1;
    static int resident = 0;
    if (checked_dim != dim) {
        int dev = 0, sms = 0, per_sm = 0;
        resident = cudaGetDevice(&dev) == cudaSuccess &&
                           cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
                           cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ffn_fused_kernel, kFfWarps * 32,
                                                                         (size_t)dim * 2) == cudaSuccess
                       ? sms * per_sm
                       : 0;
        cudaGetLastError();
        checked_dim = dim;
    }
    return hid / 128 * kFfCluster <= resident;
}

extern "C" size_t cuk_ffn_fused_scratch(int64_t hid) {
    return ffn_counter_bytes(hid) + sizeof(float) * (size_t)(hid / 128 * kFfCluster * kFfPart);
}

extern "C" int cuk_ffn_fused_decode(const cuq_layer *gate, const cuq_layer *up, const cuq_layer *down, float *x, const float *nw,
                                    float eps, const float *rsc, float *rout, void *scratch, cudaStream_t s) {
    if (!cuk_ffn_fused_ok(gate, up, down))
        return gptq_fail("fused feed-forward: not for these layers (gate %lld x %lld, down %lld x %lld) or this GPU",
                         (long long)gate->out, (long long)gate->in, (long long)down->out, (long long)down->in);
    FfnArgs A;
    A.gq = reinterpret_cast<const uint4 *>(gate->qw), A.uq = reinterpret_cast<const uint4 *>(up->qw);
    A.dq = reinterpret_cast<const uint4 *>(down->qw);
    A.gm = gate->meta, A.um = up->meta, A.dm = down->meta;
    A.zg = gate->zero_base, A.zu = up->zero_base, A.zd = down->zero_base;
    A.x = x, A.nw = nw, A.eps = eps, A.rsc = rsc, A.rout = rout;
    A.dim = (int)gate->in_pad, A.hid = (int)gate->out;
    A.ctr = static_cast<unsigned *>(scratch);
    A.part = reinterpret_cast<float *>(static_cast<char *>(scratch) + ffn_counter_bytes(A.hid));
    const unsigned grid = (unsigned)(A.hid / 128 * kFfCluster);
    return cu_check(cu_launch(ffn_fused_kernel, dim3(grid), dim3(kFfWarps * 32), (size_t)A.dim * 2, s, A), "fused feed-forward");
}
