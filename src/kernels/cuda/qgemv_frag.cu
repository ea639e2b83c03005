// The decode GEMV of 4-bit tiled layers on activations in fragment order (cuq.h: "frag").
//
// Why another kernel: the tensor-core GEMV of qgemv.cu stages the scales and the whole
// activation vector (converted to fp16) in shared memory in every thread block, behind
// two barriers, before its first multiply; with 256 blocks per 4096-row layer that is 256
// conversions of the same vector (for down_proj with SwiGLU: 256 x 11008 sigmoids), and
// ncu showed the kernel issue-bound at 15-21 warps per SM, 23-39% of DRAM bandwidth.
// Here the producer of the activations writes them once, already as the mma's fp16 B
// fragments (cuk_frag16, or fused into RMSNorm and into the gate/up GEMV below), and the
// scales and zero points of each 16-row tile's block come as a 48-byte record beside the
// codes (cuq_layer.meta, laid out by step for the warps: frag_mma.cuh).  Every load of a warp is then a plain register load: no shared
// memory, no barrier before the loop.  Before pdl_wait() a warp requests the codes and
// records of its first D steps (independent of the previous kernel); after it, each step
// needs the 64 bytes of B fragments of its block (lanes of tokens < T only; they come from
// L2), fetched one step ahead.
//
// Arithmetic as the tensor-core kernel: 1024 + code as fp16 by one LOP3, the B fragments
// of token g at the lane's own inputs, an all-ones A for Σx, and per block in fp32
// y += s · (D − (1024 + z) · Σx).
//
// The gate/up pair (SwiGLU): one thread block takes tile i of gate and tile i of up (the
// same rows), each warp multiplies both with the same B fragments, and the block writes
// silu(gate) · up straight into the fragment order of down_proj's input.
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/frag_mma.cuh"

namespace {

using namespace frag;

constexpr int kFragWarps = 16;  // most warps per thread block, splitting a tile's blocks
constexpr int kFragParts = 3;   // layers in one launch (q/k/v)

struct FragPart {
    const uint4 *qw;     // tiled codes
    const uint8_t *meta; // (tiles, meta_tile_bytes(row_blocks)) records (frag_mma.cuh)
    float *y;            // (T, out)
    int out, tile0, zero_base;
};
struct FragParts {
    FragPart p[kFragParts];
    int n;
    int add;                // y += the products instead of y = (not PAIR)
    const float *nx, *nw;   // non-NULL: the input is RMSNorm(nx) · nw (one token), made here (norm_frag_smem)
    float eps;
    int ndefer;             // with nx: the fragments are nx · nw, the pair's sums scaled by 1 / rms at the end
    const float *rss;       // non-NULL: products times 1 / sqrt(Σ rss[0 .. rn) · rinv + reps) (deferred norm)
    int rn;
    float rinv, reps;
    const float *pw;        // non-NULL (with add, one token): the next input from the new y, into pxf, pss
    uint32_t *pxf;
    float *pss;
    // Deferred norms keep their fp16 inputs near 1: the input fragments were made times *rsc
    // (NULL: 1), so the products are scaled by (1 / rms) / *rsc; the 1 / rms found goes to
    // *rout (for the next norm's producer); pxf is made times *psc.
    const float *rsc, *psc;
    float *rout;
};

// The deferred norms' inputs of a block, staged in shared memory after the fold's
// fragments (frag_smem): [0] the input's scale, [1] the next input's, [4 ..) the partial
// sums.  Requested by cp.async right after the dependency wait, so no warp waits for them
// before its first step; in place after cp_async_wait_all() and the block's last barrier.
__device__ __forceinline__ float *norm_stage(const FragParts &parts, uint4 *sm, int row_blocks) {
    float *st = reinterpret_cast<float *>(sm) + (parts.nx ? row_blocks * 64 : 0);
    if (threadIdx.x == 0) {
        st[0] = st[1] = 1.f;
        if (parts.rsc) cp_async4(st, parts.rsc);
        if (parts.psc) cp_async4(st + 1, parts.psc);
    }
    if (parts.rss)
        for (int i = threadIdx.x; i < parts.rn / 4; i += blockDim.x) cp_async16(st + 4 + 4 * i, parts.rss + 4 * i);
    cp_async_commit();
    return st;
}

// 1 / rms from the staged partial sums (the whole warp; the butterfly gives every lane the
// same sum, the same in every block); 1 without them.
__device__ __forceinline__ float rms_inv(const FragParts &parts, const float *st, int lane) {
    if (!parts.rss) return 1.f;
    float v = 0.f;
    for (int j = lane; j < parts.rn; j += 32) v += st[4 + j];
    v = warp_sum(v);
    return 1.0f / sqrtf(v * parts.rinv + parts.reps);
}

// The scale of a block's sums from the norm's 1 / rms (inv_rms; 1 without a deferred norm):
// divided by the input's scale; block 0 hands 1 / rms on.
__device__ __forceinline__ float out_scale(const FragParts &parts, float inv_rms, const float *st, int lane) {
    if (parts.rout && blockIdx.x == 0 && lane == 0) *parts.rout = inv_rms;
    return inv_rms / st[0];
}

// Dynamic shared memory of a launch: the fold's fragments, the deferred norms' stage.
static inline size_t frag_smem(const FragParts &parts, int row_blocks) {
    return (parts.nx ? (size_t)row_blocks * 256 : 0) + 16 + (parts.rss ? (size_t)parts.rn * 4 : 0);
}

// The RMSNorm folded into the GEMV (one token): each thread block reads the residual nx
// (in_pad floats, from L2) and the norm weights nw, reduces Σx² over its threads, and
// writes nw · x / rms(x) as the B fragments (fragment order, token 0) into its shared
// memory sm, which the warps then read instead of global fragments.  in_pad / 8 units of
// 4 words, as frag16_kernel; with at most kNormUnits units per thread (4096 inputs at 8
// warps) one round trip to L2 (x and w requested together, kept in registers), else two.
constexpr int kNormUnits = 2;

// Deferred (parts.ndefer): the fragments are nw · x (times *parts.rsc), written without
// waiting for the block's Σx², and the thread's share of Σx² is returned (reduced after the
// main loop, the scale applied to the sums: norm_defer_inv).  Otherwise returns 0.
__device__ __noinline__ float norm_frag_smem(const FragParts &parts, uint4 *sm, int in_pad) {
    __shared__ float red[kFragWarps];
    const int units = in_pad >> 3, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float4 *x4 = reinterpret_cast<const float4 *>(parts.nx), *w4 = reinterpret_cast<const float4 *>(parts.nw);
    const bool one = units <= kNormUnits * (int)blockDim.x;
    float4 xa[kNormUnits], xb[kNormUnits], wa[kNormUnits], wb[kNormUnits];
    float ss = 0.f;
    const float sc = parts.ndefer && parts.rsc ? __ldcg(parts.rsc) : 1.f;  // requested with x and w
    if (one) {
#pragma unroll
        for (int k = 0; k < kNormUnits; k++) {
            const int u = threadIdx.x + k * blockDim.x;
            if (u < units) {
                const int q = norm_unit_pos(u) >> 2;
                xa[k] = __ldcg(x4 + q), xb[k] = __ldcg(x4 + q + 16), wa[k] = __ldg(w4 + q), wb[k] = __ldg(w4 + q + 16);
            }
        }
#pragma unroll
        for (int k = 0; k < kNormUnits; k++)
            if (threadIdx.x + k * blockDim.x < units) ss += norm_ss(xa[k], xb[k]);
    } else {
        for (int u = threadIdx.x; u < units; u += blockDim.x) {
            const int q = norm_unit_pos(u) >> 2;
            ss += norm_ss(__ldcg(x4 + q), __ldcg(x4 + q + 16));
        }
    }
    // deferred: x · w times the previous norm's 1 / rms (parts.rsc), near 1 in fp16, and this
    // thread's Σx² back to the caller; else normalized now, by the block's Σx²
    float scale = sc;
    if (!parts.ndefer) {
        float tot = ss;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) tot += __shfl_xor_sync(0xffffffffu, tot, o);
        if (lane == 0) red[warp] = tot;
        __syncthreads();
        tot = 0.f;
        for (int w = 0; w < nw; w++) tot += red[w];
        scale = 1.0f / sqrtf(tot / in_pad + parts.eps);
    }
    if (one) {
#pragma unroll
        for (int k = 0; k < kNormUnits; k++) {
            const int u = threadIdx.x + k * blockDim.x;
            if (u < units) sm[u] = norm_unit(xa[k], xb[k], wa[k], wb[k], scale);
        }
    } else {
        for (int u = threadIdx.x; u < units; u += blockDim.x) {
            const int q = norm_unit_pos(u) >> 2;
            sm[u] = norm_unit(__ldcg(x4 + q), __ldcg(x4 + q + 16), __ldg(w4 + q), __ldg(w4 + q + 16), scale);
        }
    }
    __syncthreads();
    return parts.ndefer ? ss : 0.f;
}

// The deferred norm's 1 / rms from the warps' shares of Σx² in red (written before the
// block's last barrier), added in warp order: the same in every block.
__device__ __forceinline__ float norm_defer_inv(const FragParts &parts, const float *red, int nw, int in_pad) {
    float ss = 0.f;
    for (int w = 0; w < nw; w++) ss += red[w];
    return 1.0f / sqrtf(ss / in_pad + parts.eps);
}

// The block's sums v (the lane's accumulator layout) to y, or silu(gate) · up to hf (PAIR).
template <bool PAIR>
__device__ __forceinline__ void frag_epilogue(const FragParts &parts, int pi, int tile, int lane,
                                              const float4 (&v)[PAIR ? 2 : 1], int ntok, uint32_t *__restrict__ hf, float inv,
                                              float pre = 1.f) {
    constexpr int R = PAIR ? 2 : 1;
    const int g = lane >> 2, t = lane & 3;
    const int out = parts.p[PAIR ? 0 : pi].out, row0 = tile * 16;
    // accumulator (row, token): x = (g, 2t), y = (g, 2t + 1), z = (g + 8, 2t), w = (g + 8, 2t + 1)
    const int rows[2] = {row0 + g, row0 + g + 8}, toks[2] = {2 * t, 2 * t + 1};
    float val[R][2][2], ss = 0.f;
#pragma unroll
    for (int r = 0; r < R; r++) val[r][0][0] = v[r].x, val[r][0][1] = v[r].y, val[r][1][0] = v[r].z, val[r][1][1] = v[r].w;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
            if (toks[j] >= ntok || rows[i] >= out) continue;
            if (PAIR) {
                const float a = val[0][i][j] * inv, u = val[R - 1][i][j] * inv;
                const float h = a / (1.0f + expf(-a)) * u;  // as cuk_silu_mul
                if (parts.p[0].y) parts.p[0].y[(int64_t)toks[j] * out + rows[i]] = h;
                reinterpret_cast<__half *>(hf)[cuq_frag_half(toks[j], rows[i], out >> 7)] = __float2half_rn(h);
            } else {
                float *dst = parts.p[pi].y + (int64_t)toks[j] * out + rows[i];
                const float nv = parts.add ? *dst + val[0][i][j] * inv : val[0][i][j] * inv;
                *dst = nv;
                if (parts.pw) {  // one token: the next input's fragment and this tile's Σ y²
                    reinterpret_cast<__half *>(parts.pxf)[cuq_frag_half(0, rows[i], out >> 7)] = __float2half_rn(nv * parts.pw[rows[i]] * pre);
                    ss = fmaf(nv, nv, ss);
                }
            }
        }
    if (!PAIR && parts.pw) {
        ss = warp_sum(ss);
        if (lane == 0) parts.pss[tile] = ss;
    }
}

// R = 1: block i is tile i of the parts laid end to end (tile0).  R = 2 (PAIR): block i is
// tile i of part 0 (gate) and of part 1 (up); the result silu(gate) · up goes into hf, the
// fragment order of an input of `out` features (hf_rb = out / 128 blocks per token).
template <int D, bool PAIR, int MAXW>
__global__ void __launch_bounds__(MAXW * 32, MAXW == 16 && D == 1 && !PAIR ? 2 : 1)
    qgemv_frag_kernel(const __grid_constant__ FragParts parts, const uint4 *xf, int row_blocks, int ntok,
                      uint32_t *__restrict__ hf) {
    constexpr int R = PAIR ? 2 : 1;
    BlockTrace bt = trace_begin();
    pdl_trigger();
    __shared__ float4 red[MAXW][R][32];
    int pi = 0;
    if (!PAIR) {
#pragma unroll
        for (int k = 1; k < kFragParts; k++)
            if (k < parts.n && (int)blockIdx.x >= parts.p[k].tile0) pi = k;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int tile = (int)blockIdx.x - (PAIR ? 0 : parts.p[pi].tile0);
    const uint4 *q[R];
    const uint8_t *m[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const FragPart &P = parts.p[PAIR ? r : pi];
        q[r] = P.qw + ((int64_t)tile * row_blocks * 16 + g) * 4 + t;
        m[r] = P.meta + (int64_t)tile * meta_tile_bytes(row_blocks);
    }
    // the ring: step j of this warp is block warp + j·nw, slot j % D
    Step ring[D][R];
#pragma unroll
    for (int s = 0; s < D; s++) {
        const int b = warp + s * nw;
#pragma unroll
        for (int r = 0; r < R; r++)
            if (b < row_blocks) ring[s][r] = load_step(q[r], m[r], row_blocks, b, g);
    }
    pdl_wait();
    trace_wait(bt);
    extern __shared__ uint4 xsm[];  // the folded norm's fragments (parts.nx), the deferred norms' stage
    const float *nst = norm_stage(parts, xsm, row_blocks);
    float nss = 0.f;  // the deferred norm's share of Σx²
    if (parts.nx) {
        nss = norm_frag_smem(parts, xsm, row_blocks * 128);
        xf = xsm;
    }
    const bool has_tok = g < ntok;
    const uint4 *xg = xf + ((int64_t)g * row_blocks * 4 + t) * 4;  // token g, quarter t; block b at + 16 b
    uint4 xn[4];
#pragma unroll
    for (int p = 0; p < 4; p++) xn[p] = has_tok && warp < row_blocks ? xg[(int64_t)warp * 16 + p] : make_uint4(0, 0, 0, 0);
    float acc[R][4];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
    for (int b0 = warp; b0 < row_blocks; b0 += D * nw) {
#pragma unroll
        for (int s = 0; s < D; s++) {
            const int b = b0 + s * nw;
            if (b >= row_blocks) break;
            Step cur[R];
#pragma unroll
            for (int r = 0; r < R; r++) cur[r] = ring[s][r];
            const int bn = b + D * nw;
            if (bn < row_blocks) {
#pragma unroll
                for (int r = 0; r < R; r++) ring[s][r] = load_step(q[r], m[r], row_blocks, bn, g);
            }
            uint32_t bx[4][4];
#pragma unroll
            for (int p = 0; p < 4; p++) bx[p][0] = xn[p].x, bx[p][1] = xn[p].y, bx[p][2] = xn[p].z, bx[p][3] = xn[p].w;
            const int bx1 = b + nw;
#pragma unroll
            for (int p = 0; p < 4; p++) xn[p] = has_tok && bx1 < row_blocks ? xg[(int64_t)bx1 * 16 + p] : make_uint4(0, 0, 0, 0);
            int zb[R];
#pragma unroll
            for (int r = 0; r < R; r++) zb[r] = parts.p[PAIR ? r : pi].zero_base;
            steps_mma<R>(acc, cur, bx, zb);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) red[warp][r][lane] = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    __shared__ float red_ss[MAXW];
    if (parts.ndefer) {
        const float w = warp_sum(nss);
        if (lane == 0) red_ss[warp] = w;
    }
    cp_async_wait_all();
    __syncthreads();
    if (warp != 0) return;
    float4 v[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        v[r] = red[0][r][lane];
        for (int w = 1; w < nw; w++) {
            const float4 u = red[w][r][lane];
            v[r].x += u.x, v[r].y += u.y, v[r].z += u.z, v[r].w += u.w;
        }
    }
    const float inv_rms = parts.ndefer ? norm_defer_inv(parts, red_ss, nw, row_blocks * 128) : rms_inv(parts, nst, lane);
    frag_epilogue<PAIR>(parts, pi, tile, lane, v, ntok, hf, out_scale(parts, inv_rms, nst, lane), nst[1]);
    trace_end(bt, PAIR ? 8 : 2);
}

// The part and the tile within it of tile i of a launch (the parts laid end to end).
__device__ __forceinline__ void locate_tile(const FragParts &parts, bool pair, int i, int &pi, int &tile) {
    pi = 0;
    if (!pair) {
#pragma unroll
        for (int k = 1; k < kFragParts; k++)
            if (k < parts.n && i >= parts.p[k].tile0) pi = k;
    }
    tile = i - (pair ? 0 : parts.p[pi].tile0);
}

// The persistent form (ring depth 1): a launch of `tiles` tiles whose grid would take more
// than one wave of resident blocks runs instead as G = ceil(units / nt) blocks of nt units
// each (units blockIdx.x, + G, + 2G, ...; nt <= MAXT), one wave.  The warps' step
// sequences run on from one unit into the next (the ring prefetches across the boundary), so
// a block streams codes until its last unit: no second wave whose blocks start with one
// step in flight and leave most of the SM idle at the end (q/k/v: 768 tiles on 528 block
// slots; the gate/up pair: 688 on 396).  Each warp's sums of a unit go to shared memory
// when it leaves the unit; at the end warp k adds unit k's in warp order, so the results
// are bit-identical to the one-tile-per-block kernel with the same warps.
// MODE 0: a unit is one tile.  MODE 1 (the gate/up pair): unit i is tile i of gate and of
// up, written as silu(gate) · up.  MODE 2 (dual): unit i is tiles i and i + ceil(tiles / 2)
// of the parts laid end to end, multiplied with the same B fragments (two steps of codes
// in flight per warp, as the pair), each written as its own output.
// (A shared-memory ring filled by cp.async a few steps ahead, in place of the register
// ring, was measured slower in decode and removed: docs/PERFORMANCE.md, sessions 8-10.)
template <int MODE, int NW, int MAXT, int MINB>
__global__ void __launch_bounds__(NW * 32, MINB)
    qgemv_frag_multi_kernel(const __grid_constant__ FragParts parts, const uint4 *xf, int row_blocks, int ntok,
                            uint32_t *__restrict__ hf, int tiles) {
    constexpr int R = MODE ? 2 : 1;
    constexpr bool PAIR = MODE == 1;
    BlockTrace bt = trace_begin();
    pdl_trigger();
    __shared__ float4 red[MAXT][NW][R][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int units = MODE == 2 ? (tiles + 1) / 2 : tiles;
    const int G = (int)gridDim.x, nt = min(MAXT, (units - (int)blockIdx.x + G - 1) / G);
    const bool active = warp < row_blocks && nt > 0;
    // part and tile of operand r of this block's unit k (tile < 0: none, MODE 2's odd end)
    auto unit_tile = [&](int k, int r, int &pi, int &tile) {
        const int i = (int)blockIdx.x + k * G;
        if (MODE == 2) {
            const int ti = i + r * units;
            if (ti >= tiles) {
                pi = 0, tile = -1;
                return;
            }
            locate_tile(parts, false, ti, pi, tile);
        } else {
            locate_tile(parts, PAIR, i, pi, tile);
            if (PAIR) pi = r;
        }
    };
    // the codes and records of this block's unit k, for this lane, and the zero bases
    auto tile_at = [&](int k, const uint4 *(&q)[R], const uint8_t *(&m)[R], int (&zb)[R]) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            int pi, tile;
            unit_tile(k, r, pi, tile);
            if (tile < 0) unit_tile(k, 0, pi, tile);  // loads of a real tile, the sums unused
            const FragPart &P = parts.p[pi];
            q[r] = P.qw + ((int64_t)tile * row_blocks * 16 + g) * 4 + t;
            m[r] = P.meta + (int64_t)tile * meta_tile_bytes(row_blocks);
            zb[r] = PAIR ? parts.p[0].zero_base : P.zero_base;
        }
    };
    const uint4 *q[R];
    const uint8_t *m[R];
    int zb[R], k = 0, b = warp;
    tile_at(0, q, m, zb);
    Step cur[R];
    if (active) {
#pragma unroll
        for (int r = 0; r < R; r++) cur[r] = load_step(q[r], m[r], row_blocks, b, g);
    }
    pdl_wait();
    trace_wait(bt);
    extern __shared__ uint4 xsm[];  // the folded norm's fragments (parts.nx), the deferred norms' stage
    const float *nst = norm_stage(parts, xsm, row_blocks);
    float nss = 0.f;  // the deferred norm's share of Σx²
    if (parts.nx) {
        nss = norm_frag_smem(parts, xsm, row_blocks * 128);
        xf = xsm;
    }
    const bool has_tok = g < ntok;
    const uint4 *xg = xf + ((int64_t)g * row_blocks * 4 + t) * 4;  // token g, quarter t; block b at + 16 b
    uint4 xn[4];
#pragma unroll
    for (int p = 0; p < 4; p++) xn[p] = has_tok && active ? xg[(int64_t)warp * 16 + p] : make_uint4(0, 0, 0, 0);
    float acc[R][4];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
    while (active && k < nt) {
        int kn = k, bn = b + NW;
        if (bn >= row_blocks) kn = k + 1, bn = warp;
        const uint4 *qn[R];
        const uint8_t *mn[R];
        int zbn[R];
#pragma unroll
        for (int r = 0; r < R; r++) qn[r] = q[r], mn[r] = m[r], zbn[r] = zb[r];
        if (kn != k && kn < nt) tile_at(kn, qn, mn, zbn);
        Step nxt[R];
        if (kn < nt) {
#pragma unroll
            for (int r = 0; r < R; r++) nxt[r] = load_step(qn[r], mn[r], row_blocks, bn, g);
        }
        uint32_t bx[4][4];
#pragma unroll
        for (int p = 0; p < 4; p++) bx[p][0] = xn[p].x, bx[p][1] = xn[p].y, bx[p][2] = xn[p].z, bx[p][3] = xn[p].w;
#pragma unroll
        for (int p = 0; p < 4; p++) xn[p] = has_tok && kn < nt ? xg[(int64_t)bn * 16 + p] : make_uint4(0, 0, 0, 0);
        steps_mma<R>(acc, cur, bx, zb);
        if (kn != k) {  // this warp is done with unit k
#pragma unroll
            for (int r = 0; r < R; r++) {
                red[k][warp][r][lane] = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
                acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            cur[r] = nxt[r];
            q[r] = qn[r], m[r] = mn[r], zb[r] = zbn[r];
        }
        k = kn, b = bn;
    }
    if (!active)
        for (int kk = 0; kk < nt; kk++)
#pragma unroll
            for (int r = 0; r < R; r++) red[kk][warp][r][lane] = make_float4(0.f, 0.f, 0.f, 0.f);
    __shared__ float red_ss[NW];
    if (parts.ndefer) {
        const float w = warp_sum(nss);
        if (lane == 0) red_ss[warp] = w;
    }
    cp_async_wait_all();
    __syncthreads();
    if (warp >= nt) return;
    float4 v[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        v[r] = red[warp][0][r][lane];
        for (int w = 1; w < NW; w++) {
            const float4 u = red[warp][w][r][lane];
            v[r].x += u.x, v[r].y += u.y, v[r].z += u.z, v[r].w += u.w;
        }
    }
    const float inv =
        out_scale(parts, parts.ndefer ? norm_defer_inv(parts, red_ss, NW, row_blocks * 128) : rms_inv(parts, nst, lane), nst, lane);
    if (MODE == 2) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            int pi, tile;
            unit_tile(warp, r, pi, tile);
            const float4 v1[1] = {v[r]};
            if (tile >= 0) frag_epilogue<false>(parts, pi, tile, lane, v1, ntok, hf, inv, nst[1]);
        }
    } else {
        int pi, tile;
        locate_tile(parts, PAIR, (int)blockIdx.x + warp * G, pi, tile);
        const float4(&vv)[PAIR ? 2 : 1] = *reinterpret_cast<const float4(*)[PAIR ? 2 : 1]>(&v);
        frag_epilogue<PAIR>(parts, pi, tile, lane, vv, ntok, hf, inv, nst[1]);
    }
    trace_end(bt, MODE == 1 ? 7 : MODE == 2 ? 9 : 3);
}

// xf (T, in_pad) in fragment order = x (or silu(x) · x2), permuted by perm when given.
// One thread per uint4 of the output: token k, block b, quarter t, pair p.
__global__ void frag16_kernel(uint4 *__restrict__ xf, const float *__restrict__ x, const float *__restrict__ x2,
                              const int32_t *__restrict__ perm, int64_t in, int64_t in_pad, int T) {
    pdl_trigger();
    pdl_wait();
    const int64_t rb = in_pad >> 7, units = (int64_t)T * rb * 16;
    for (int64_t u = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; u < units; u += (int64_t)gridDim.x * blockDim.x) {
        const int p = (int)(u & 3), t = (int)((u >> 2) & 3);
        const int64_t kb = u >> 4, k = kb / rb, b = kb - k * rb;
        const int64_t pos = 128 * b + 32 * (p >> 1) + 16 * (p & 1) + 4 * t;
        uint32_t w[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float lh[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int64_t at = pos + j + 64 * h;
                const int64_t src = perm ? perm[at] : at;
                float a = 0.f;
                if (src >= 0 && src < in) {
                    a = x[k * in + src];
                    if (x2) a = a / (1.0f + expf(-a)) * x2[k * in + src];
                }
                lh[h] = a;
            }
            const __half2 hv = __floats2half2_rn(lh[0], lh[1]);
            w[j] = *reinterpret_cast<const uint32_t *>(&hv);
        }
        xf[u] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

// meta of a tiled layer from its scales, zero points and chunk groups.
__global__ void meta_kernel(uint8_t *__restrict__ meta, const __half *__restrict__ scales, const uint8_t *__restrict__ zeros,
                            const int32_t *__restrict__ chunk_group, int out, int groups, int row_blocks, int tiles) {
    const int64_t n = (int64_t)tiles * row_blocks * 8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int g = (int)(i & 7);
        const int64_t tb = i >> 3, tile = tb / row_blocks, b = tb - tile * row_blocks;
        const int grp = chunk_group[b * 4];
        const int ra = (int)tile * 16 + g, rb = ra + 8;
        const __half sa = ra < out ? scales[(int64_t)ra * groups + grp] : __float2half(0.f);
        const __half sb = rb < out ? scales[(int64_t)rb * groups + grp] : __float2half(0.f);
        const uint8_t za = ra < out ? zeros[(int64_t)ra * groups + grp] : 0, zb = rb < out ? zeros[(int64_t)rb * groups + grp] : 0;
        uint8_t *rec = meta + tile * meta_tile_bytes(row_blocks);
        *reinterpret_cast<__half2 *>(rec + meta_scale_at(row_blocks, (int)b, g)) = __halves2half2(sa, sb);
        *reinterpret_cast<uint16_t *>(rec + meta_zero_at(row_blocks, (int)b, g)) = (uint16_t)(za | (zb << 8));
    }
}

int frag_depth = -1;  // GPTQ_CUDA_FRAG_DEPTH (1, 2, 4); 0: 1
int frag_warps = -1;  // GPTQ_CUDA_FRAG_WARPS (1..16); 0: by grid size (frag_shape)

void frag_settle() {
    if (frag_depth < 0) {
        const char *e = getenv("GPTQ_CUDA_FRAG_DEPTH");
        frag_depth = e && *e ? atoi(e) : 0;
    }
    if (frag_warps < 0) {
        const char *e = getenv("GPTQ_CUDA_FRAG_WARPS");
        frag_warps = e && *e ? atoi(e) : 0;
        if (frag_warps > kFragWarps) frag_warps = kFragWarps;
    }
}

// Ring depth and warps for a launch of `blocks` thread blocks.  Measured on the H100 (7B
// decode shapes, docs/PERFORMANCE.md): depth 1 beats deeper rings everywhere, as more warps
// fit; grids of 512 blocks and more (q/k/v: 768, gate/up pairs: 688) are fastest with 8
// warps per block (4 blocks per SM), the 256-block grids of o_proj and down_proj with 16
// (all their warps resident at once, 2 blocks per SM: hence the kernel's cap of 64
// registers at 16 warps; at 82 the second half of down_proj's blocks ran as a second wave).
void frag_shape(int blocks, int *depth, int *warps) {
    frag_settle();
    *depth = frag_depth > 0 ? frag_depth : 1;
    *warps = frag_warps > 0 ? frag_warps : blocks >= 512 ? 8 : 16;
}

template <bool PAIR, int MAXW>
cudaError_t launch_frag_w(int depth, dim3 grid, dim3 block, cudaStream_t s, const FragParts &parts, const uint4 *x4,
                          int row_blocks, int T, uint32_t *hf) {
    const size_t sm = frag_smem(parts, row_blocks);
    if (depth >= 4) return cu_launch(qgemv_frag_kernel<4, PAIR, MAXW>, grid, block, sm, s, parts, x4, row_blocks, T, hf);
    if (depth >= 2) return cu_launch(qgemv_frag_kernel<2, PAIR, MAXW>, grid, block, sm, s, parts, x4, row_blocks, T, hf);
    return cu_launch(qgemv_frag_kernel<1, PAIR, MAXW>, grid, block, sm, s, parts, x4, row_blocks, T, hf);
}

int frag_multi = -1;  // GPTQ_CUDA_FRAG_MULTI=0: never the persistent form (default 1: where it applies)
int multi_slots = 0;  // > 0: resident blocks assumed instead of the occupancy's (tests)
long multi_launches = 0;  // persistent launches so far (tests check that they ran)
int frag_dual = -1;       // GPTQ_CUDA_FRAG_DUAL: multi-layer launches two tiles per warp step (MODE 2): 1 in
                          // ceil(units / nt) blocks, 2 (default) on every resident slot, 0 no

// Resident blocks of `kernel` on the whole GPU at `threads` threads per block (0: unknown).
template <typename K>
int resident_blocks(K kernel, int threads, size_t smem = 0) {
    int dev = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem) != cudaSuccess)
        return 0;
    return sms * per_sm;
}

// The persistent launch (qgemv_frag_multi_kernel) when `tiles` one-tile blocks would take
// more than one wave (MODE 2: always) and nt = ceil(units / resident blocks) <= MAXT; 1 if
// launched.
template <int MODE, int NW, int MAXT, int MINB>
int launch_multi(const FragParts &parts, int tiles, const uint4 *x4, int row_blocks, int T, uint32_t *hf, cudaStream_t s,
                 cudaError_t *err) {
    auto kern = qgemv_frag_multi_kernel<MODE, NW, MAXT, MINB>;
    const size_t smem = frag_smem(parts, row_blocks);
    static int resident = -1;
    if (resident < 0) resident = resident_blocks(kern, NW * 32, smem);
    const int slots = multi_slots > 0 ? multi_slots : resident;
    const int units = MODE == 2 ? (tiles + 1) / 2 : tiles;
    if (slots <= 0 || (MODE != 2 && tiles <= slots)) return 0;
    const int nt = (units + slots - 1) / slots;
    if (nt > MAXT) return 0;
    int grid = MODE == 2 && frag_dual == 2 ? (units < slots ? units : slots) : (units + nt - 1) / nt;
    // GPTQ_CUDA_DUAL_GRID: the dual form's blocks (benchmarks; at least units / MAXT).  7B
    // decode (q/k/v: 384 units, 264 slots): 264 1.773 / 1.763, 252 1.764 / 1.764, 240 1.764 /
    // 1.764, 228 1.779 / 1.778, 216 1.804 / 1.811, 200 1.848 / 1.846 ms (session 13)
    if (MODE == 2) {
        static int dual_grid = -1;
        if (dual_grid < 0) {
            const char *e = getenv("GPTQ_CUDA_DUAL_GRID");
            dual_grid = e && atoi(e) > 0 ? atoi(e) : 0;
        }
        if (dual_grid > 0 && dual_grid * MAXT >= units && dual_grid <= units) grid = dual_grid;
    }
    multi_launches++;
    *err = cu_launch(kern, dim3((unsigned)grid), dim3(NW * 32), smem, s, parts, x4, row_blocks, T, hf, tiles);
    return 1;
}

template <bool PAIR>
cudaError_t launch_frag(const FragParts &parts, int tiles, const uint32_t *xf, int row_blocks, int T, uint32_t *hf,
                        cudaStream_t s) {
    int depth, warps;
    frag_shape(tiles, &depth, &warps);
    const int nw = row_blocks < warps ? row_blocks : warps;
    const dim3 grid((unsigned)tiles), block((unsigned)(nw * 32));
    const uint4 *x4 = reinterpret_cast<const uint4 *>(xf);
    if (frag_multi < 0) {
        const char *e = getenv("GPTQ_CUDA_FRAG_MULTI"), *sl = getenv("GPTQ_CUDA_FRAG_SLOTS");
        frag_multi = e && *e ? atoi(e) : 1;
        if (sl && atoi(sl) > 0) multi_slots = atoi(sl);  // resident blocks assumed (benchmarks)
    }
    if (frag_multi && depth == 1 && frag_warps <= 0) {
        // 8 warps, measured on the H100 (7B shapes, docs/PERFORMANCE.md): q/k/v's 768 tiles in
        // 384 blocks of 2 (80 registers, 3 blocks per SM), the gate/up pair's 688 in 230
        // blocks of 3 (128 registers, 2 per SM); 16 warps lost (the 64-register cap spills)
        cudaError_t err = cudaSuccess;
        if (frag_dual < 0) {
            const char *e = getenv("GPTQ_CUDA_FRAG_DUAL");
            frag_dual = e && *e ? atoi(e) : 2;
        }
        constexpr int M = PAIR ? 1 : 0, B = PAIR ? 2 : 3;
        const bool dual = !PAIR && frag_dual > 0 && parts.n > 1;
        if (dual && launch_multi<2, 8, 4, 2>(parts, tiles, x4, row_blocks, T, hf, s, &err)) return err;
        if (launch_multi<M, 8, 4, B>(parts, tiles, x4, row_blocks, T, hf, s, &err)) return err;
    }
    return nw > 8 ? launch_frag_w<PAIR, 16>(depth, grid, block, s, parts, x4, row_blocks, T, hf)
                  : launch_frag_w<PAIR, 8>(depth, grid, block, s, parts, x4, row_blocks, T, hf);
}

}  // namespace

CU_TRACE_BINDER(trace_bind_frag)

extern "C" int cuq_frag_ok(const cuq_layer *L) {
    return L->bits == 4 && L->tiled && L->block_group && L->meta != NULL && L->in_pad % 128 == 0;
}

extern "C" int64_t cuq_frag_words(int64_t in_pad, int T) { return (int64_t)T * in_pad / 2; }

extern "C" void cuq_frag_set(int depth, int warps) {
    if (depth >= 0) frag_depth = depth;
    if (warps >= 0 && warps <= kFragWarps) frag_warps = warps;
}

extern "C" long cuq_frag_multi_launches(void) { return multi_launches; }

extern "C" void cuq_frag_set_dual(int mode) { frag_dual = mode < 0 ? -1 : mode > 2 ? 2 : mode; }

extern "C" void cuq_frag_set_multi(int on, int slots) {
    frag_multi = on < 0 ? -1 : on != 0;
    multi_slots = slots > 0 ? slots : 0;
}

extern "C" int cuq_build_meta(cuq_layer *d) {
    const int tiles = (int)((d->out + 15) / 16);
    const size_t bytes = (size_t)tiles * (size_t)meta_tile_bytes((int)d->row_blocks);
    if (cu_check(cudaMalloc((void **)&d->meta, bytes), "allocating tile records")) {
        d->meta = NULL;
        return -1;
    }
    const int64_t n = (int64_t)tiles * d->row_blocks * 8;
    meta_kernel<<<cu_grid(n), 256>>>(d->meta, reinterpret_cast<const __half *>(d->scales), d->zeros, d->chunk_group,
                                     (int)d->out, (int)d->groups, (int)d->row_blocks, tiles);
    return cu_check(cudaGetLastError(), "building tile records") || cu_check(cudaDeviceSynchronize(), "building tile records");
}

extern "C" int cuk_frag16(uint32_t *xf, const float *x, const float *x2, const int32_t *perm, int64_t in, int64_t in_pad,
                          int T, cudaStream_t s) {
    if (in_pad % 128) return gptq_fail("cuk_frag16: %lld inputs are not whole blocks of 128", (long long)in_pad);
    const int64_t units = (int64_t)T * (in_pad >> 7) * 16;
    return cu_check(cu_launch(frag16_kernel, dim3(cu_grid(units)), dim3(256), 0, s, reinterpret_cast<uint4 *>(xf), x, x2, perm,
                              in, in_pad, T),
                    "activations to fragment order");
}

// The norm fold's checks and fields (nrm NULL: none).
static int set_norm(FragParts &parts, const cuq_frag_norm *nrm, int64_t in_pad, int T, const char *what) {
    if (!nrm) return 0;
    if (T != 1 || in_pad * 2 + 16 > 48 * 1024 || !nrm->x || !nrm->w)
        return gptq_fail("%s: the RMSNorm fold takes one token and at most %d inputs", what, (48 * 1024 - 16) / 2);
    parts.nx = nrm->x, parts.nw = nrm->w, parts.eps = nrm->eps, parts.ndefer = nrm->deferred != 0;
    if (parts.ndefer) parts.rsc = nrm->scale, parts.rout = nrm->inv_out;
    return 0;
}

extern "C" int cuq_gemv_frag(const cuq_layer *const *L, float *const *y, int n, const uint32_t *xf, int T, cudaStream_t s) {
    return cuq_gemv_frag_ex(L, y, n, xf, T, NULL, 0, s);
}

extern "C" int cuq_gemv_frag_ex(const cuq_layer *const *L, float *const *y, int n, const uint32_t *xf, int T,
                                const cuq_frag_norm *nrm, int accumulate, cudaStream_t s) {
    cuq_frag_opts o;
    memset(&o, 0, sizeof o);
    o.norm = nrm, o.accumulate = accumulate;
    return cuq_gemv_frag_opt(L, y, n, xf, T, &o, s);
}

extern "C" int cuq_gemv_frag_opt(const cuq_layer *const *L, float *const *y, int n, const uint32_t *xf, int T,
                                 const cuq_frag_opts *o, cudaStream_t s) {
    if (n < 1 || n > kFragParts) return gptq_fail("cuq_gemv_frag: %d layers (1..%d)", n, kFragParts);
    if (T < 1 || T > CUQ_MAX_GEMV_T) return gptq_fail("cuq_gemv_frag: %d tokens (1..%d)", T, CUQ_MAX_GEMV_T);
    FragParts parts;
    memset(&parts, 0, sizeof parts);
    parts.n = n;
    parts.add = o && o->accumulate != 0;
    if (set_norm(parts, o ? o->norm : NULL, L[0]->in_pad, T, "cuq_gemv_frag")) return -1;
    if (o && o->rms_ssq) {
        if (T != 1 || o->rms_n < 1 || o->rms_n % 4 || o->rms_n > 4096 || o->norm)
            return gptq_fail("cuq_gemv_frag: the deferred norm takes one token, 4..4096 partial sums (a multiple of 4), no fold");
        parts.rss = o->rms_ssq, parts.rn = o->rms_n, parts.rinv = 1.0f / (float)L[0]->in, parts.reps = o->rms_eps;
        parts.rsc = o->rms_scale, parts.rout = o->rms_out;
    }
    if (o && o->pre_w) {
        if (T != 1 || n != 1 || !o->accumulate || !o->pre_xf || !o->pre_ssq || L[0]->out % 128)
            return gptq_fail("cuq_gemv_frag: the next input is written for one token of one accumulating layer of whole blocks");
        parts.pw = o->pre_w, parts.pxf = o->pre_xf, parts.pss = o->pre_ssq, parts.psc = o->pre_scale;
    }
    int tiles = 0;
    for (int k = 0; k < n; k++) {
        if (!cuq_frag_ok(L[k]) || L[k]->in_pad != L[0]->in_pad)
            return gptq_fail("cuq_gemv_frag: layer %d is not a tiled 4-bit layer of the same width", k);
        parts.p[k] = FragPart{reinterpret_cast<const uint4 *>(L[k]->qw), L[k]->meta, y[k], (int)L[k]->out, tiles, L[k]->zero_base};
        tiles += (int)((L[k]->out + 15) / 16);
    }
    return cu_check(launch_frag<false>(parts, tiles, xf, (int)L[0]->row_blocks, T, nullptr, s), "quantized GEMV (fragments)");
}

extern "C" int cuq_swiglu_frag_grid(const cuq_layer *gate, int folded) {
    const int tiles = (int)((gate->out + 15) / 16), rb = (int)gate->row_blocks;
    int depth, warps;
    frag_shape(tiles, &depth, &warps);
    if (frag_multi < 0) {  // as launch_frag
        const char *e = getenv("GPTQ_CUDA_FRAG_MULTI"), *sl = getenv("GPTQ_CUDA_FRAG_SLOTS");
        frag_multi = e && *e ? atoi(e) : 1;
        if (sl && atoi(sl) > 0) multi_slots = atoi(sl);
    }
    if (frag_multi && depth == 1 && frag_warps <= 0) {  // as launch_multi<1, 8, 4, 2>
        FragParts parts;
        memset(&parts, 0, sizeof parts);
        static const float marker = 0.f;  // only whether there is a fold counts (frag_smem)
        parts.nx = folded ? &marker : nullptr;
        const int slots = multi_slots > 0 ? multi_slots
                                          : resident_blocks(qgemv_frag_multi_kernel<1, 8, 4, 2>, 8 * 32, frag_smem(parts, rb));
        if (slots > 0 && tiles > slots) {
            const int nt = (tiles + slots - 1) / slots;
            if (nt <= 4) return (tiles + nt - 1) / nt;
        }
    }
    return tiles;
}

extern "C" int cuq_gemv_swiglu_frag(const cuq_layer *gate, const cuq_layer *up, uint32_t *hf, float *h, const uint32_t *xf,
                                    int T, cudaStream_t s) {
    return cuq_gemv_swiglu_frag_ex(gate, up, hf, h, xf, T, NULL, s);
}

extern "C" int cuq_gemv_swiglu_frag_ex(const cuq_layer *gate, const cuq_layer *up, uint32_t *hf, float *h, const uint32_t *xf,
                                       int T, const cuq_frag_norm *nrm, cudaStream_t s) {
    if (T < 1 || T > CUQ_MAX_GEMV_T) return gptq_fail("cuq_gemv_swiglu_frag: %d tokens (1..%d)", T, CUQ_MAX_GEMV_T);
    if (!cuq_frag_ok(gate) || !cuq_frag_ok(up) || gate->out != up->out || gate->in_pad != up->in_pad || gate->out % 128)
        return gptq_fail("cuq_gemv_swiglu_frag: gate and up are not tiled 4-bit layers of one shape (out a multiple of 128)");
    FragParts parts;
    memset(&parts, 0, sizeof parts);
    parts.n = 2;
    parts.p[0] = FragPart{reinterpret_cast<const uint4 *>(gate->qw), gate->meta, h, (int)gate->out, 0, gate->zero_base};
    parts.p[1] = FragPart{reinterpret_cast<const uint4 *>(up->qw), up->meta, nullptr, (int)up->out, 0, up->zero_base};
    if (set_norm(parts, nrm, gate->in_pad, T, "cuq_gemv_swiglu_frag")) return -1;
    return cu_check(launch_frag<true>(parts, (int)(gate->out / 16), xf, (int)gate->row_blocks, T, hf, s),
                    "quantized gate/up GEMV (fragments)");
}
