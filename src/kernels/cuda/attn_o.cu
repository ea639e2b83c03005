// Decode attention fused with o_proj and the residual add, for one token and head_dim 128:
// x += o_proj(attention(q, cache)).
//
// Why: in the kernel-per-operation decode step the split attention (RoPE, cache append,
// 40 splits per head, the last block of a head merging them through L2) and o_proj after
// it cost ~10.6 + ~4.8 us per layer for ~3 + ~3 us of bytes: each is a chain of dependent
// round trips (atomic publication, merge, the next kernel's wait), and o_proj's codes can
// only be requested once the attention's blocks leave the SMs.  Here one thread block
// cluster of kAoCluster blocks takes one query head:
//   - before the dependency wait, each block asks for its share of the head's cache rows
//     (positions of earlier steps; cp.async into shared memory) and for its share of
//     o_proj's codes that multiply this head (head h is o_proj's input block h: 128
//     inputs; 16-row tiles, TPW per warp, into registers): the cache and the o_proj
//     weights stream while the q/k/v GEMV drains;
//   - after it, the block scores its positions (a thread per position), softmax and
//     weighted values over its chunk (a warp per position in four, a lane per four
//     dimensions; online across chunks when the context is long),
//     and each block pushes its partial result into every block of the cluster
//     (st.async into distributed shared memory, completing on the receiver's mbarrier;
//     no global atomics, no L2 round trip, no cluster barrier on the way), where the 8 are
//     merged in rank order (deterministic);
//   - every block then holds the head's output, makes it the mma's B fragments, multiplies
//     its tiles of o_proj's block h on the tensor cores, four at a time in the one-token
//     step form (frag::steps_mma_token0: this phase is arithmetic with the DRAM idle) and adds the 16-row
//     results into x with vector atomics (red.global.add.v4.f32; 32 heads add into each
//     row: the only order-dependent rounding of the step; the sums are fp32);
//   - given the gate/up pair that follows, kAoPfBlocks more blocks (clusters of their own)
//     ask some of its codes into L2 meanwhile, while the DRAM would idle: gate's for the
//     pair blocks' first unit, up's for their later ones (l2_prefetch_next).
// The RMSNorm after it then has no residual add left (cuk_rmsnorm).  Up to a context of
// 1024 a block's positions fit one chunk at any step (its rows requested before the wait);
// past that each block loops over chunks of 128 rows with an online softmax, the rows of
// chunks after the first requested as it gets to them.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cu_common.cuh"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/frag_mma.cuh"
#include "kernels/cuda/model_kernels.h"

namespace {

using namespace frag;

constexpr int kAoCluster = 8;    // blocks per head (portable cluster size)
constexpr int kAoThreads = 128;  // one thread per head dimension, per position of a chunk
constexpr int kAoHd = 128;       // head_dim this kernel takes
constexpr int kAoMaxChunk = 128; // cache rows per chunk (at most one per thread)
constexpr int kAoBlocksPerSM = 3; // resident blocks per SM (below)
constexpr int kAoGroup = 4;      // o_proj tiles multiplied together per warp (o_proj_tiles)
// Cache rows in shared memory are kAoRow words apart (64 used): 16-byte pieces for cp.async,
// and 4 banks further per row, so that 8 lanes reading 16 bytes of 8 rows hit 32 banks.
constexpr int kAoRow = 68;
constexpr int kAoXRow = kAoHd + 4;  // floats of a pushed partial: o, m, l, 2 unused (16-byte pieces)

struct AoArgs {
    const float *q, *k_in, *v_in;  // (n_heads·128), (n_kv·128): the projections, unrotated
    __half *kc, *vc;               // the layer's cache (max_seq, n_kv·128)
    float inv_freq[kAoHd / 2];     // RoPE's, by value: no global load (below) before the wait
    const int *pos0;               // position of the token
    float *x;                      // (out) residual
    const uint4 *qw;               // o_proj codes, tile layout (tiles, row_blocks = n_heads, 16 rows, 4 uint4)
    const uint8_t *meta;           // (tiles, meta_tile_bytes(n_heads)) records (frag_mma.cuh)
    int out, tiles, tpb, zero_base;
    int n_heads, n_kv, chunk;
    float scale;
    // The blocks past the heads' (kAoPfBlocks, when pf_tiles > 0) ask the next GEMV's codes
    // into L2 while the heads compute: of each of two layers l, bytes [pf_from[l], pf_to) of
    // pf_tiles tiles (a tile pf_stride bytes) from tile pf_first[l] on (mod pf_ntiles),
    // pf_delay ns after the dependency wait.
    const char *pf[2];
    int64_t pf_stride;
    int pf_first[2], pf_from[2], pf_ntiles;
    int pf_tiles, pf_to, pf_delay;
    int marks;  // which points the trace's two marks record (ao_mark; GPTQ_CUDA_AO_MARKS, benchmarks)
};

// The trace's marks at points of the head's chain: 1 q and k rotated, 2 the block's partial
// written, 3 the cluster's partials visible, 4 the head's output merged, 5 o_proj's B
// fragments made, 6 o_proj's sums added.  Mode 0 (default) marks 2 and 4, 1 marks 1 and 3,
// 2 marks 5 and 6.
__device__ __forceinline__ void ao_mark(BlockTrace &bt, const AoArgs &A, int point) {
    constexpr int first[3] = {2, 1, 5}, second[3] = {4, 3, 6};
    const int m = A.marks >= 0 && A.marks < 3 ? A.marks : 0;
    if (point == first[m]) trace_mark(bt, 0);
    if (point == second[m]) trace_mark(bt, 1);
}

// The prefetching blocks (l2_prefetch_next).  Why blocks of their own: the DRAM idles while
// the heads score, merge and multiply o_proj (~6 µs per layer of the 7B decode), and the
// gate/up pair after them starts with one step of codes in flight per warp.  Prefetches
// issued by the heads' own blocks held back their o_proj and atomics behind the requests in
// the SM's memory pipeline (as much lost as gained); bulk prefetches keep a block resident
// until they complete, which held the next launch back.  Per-thread prefetch.global.L2 from
// 32 blocks that do nothing else, after the heads' cache rows have mostly landed: 7B decode
// 1.851 / 1.840 against 1.867 / 1.873 ms per token (docs/PERFORMANCE.md, session 10).  They
// must end before the heads do (the gate/up launch waits for the whole grid): once the
// heads ended ~1 µs sooner (session 12: their partials pushed, no global load before the
// wait), 48 blocks after 0.8 µs measured 1.803 / 1.804 against 1.828 / 1.821 ms for 32
// after 1.5 µs.
constexpr int kAoPfBlocks = 48;    // 6 clusters
constexpr int kAoPfDelayNs = 800;  // after the wait: the heads' own late loads first

__device__ __noinline__ void l2_prefetch_next(const AoArgs &A, BlockTrace &bt) {
    pdl_wait();
    trace_wait(bt);
    const unsigned long long t0 = gtimer();
    while (gtimer() - t0 < (unsigned long long)A.pf_delay) {
    }
    const int first = A.n_heads * kAoCluster, nb = (int)gridDim.x - first;
    const int me = ((int)blockIdx.x - first) * blockDim.x + threadIdx.x, nt = nb * blockDim.x;
    for (int l = 0; l < 2; l++) {  // 128-byte lines
        const int lines = (A.pf_to - A.pf_from[l]) >> 7;
        const int64_t total = (int64_t)A.pf_tiles * lines;
        for (int64_t i = me; i < total; i += nt) {
            const int64_t piece = i / lines, line = i - piece * lines;
            const int t = (int)piece + A.pf_first[l];
            const char *a = A.pf[l] + (int64_t)(t < A.pf_ntiles ? t : t - A.pf_ntiles) * A.pf_stride + A.pf_from[l] + line * 128;
            asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
        }
    }
    trace_end(bt, 11, (unsigned)nb);
}

// Over the block's 4 warps; every thread gets the result.
template <bool MAX>
__device__ __forceinline__ float block4_reduce(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();  // red may still be read from a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    const float a = red[0], b = red[1], c = red[2], d = red[3];
    return MAX ? fmaxf(fmaxf(a, b), fmaxf(c, d)) : (a + b) + (c + d);
}

// Cache rows [a, b) of kv head kvh into ks/vs rows 0.., rows of earlier steps only (p < pos).
__device__ __forceinline__ void load_rows(uint32_t *ks, uint32_t *vs, const __half *kc, const __half *vc, int a, int b,
                                          int pos, int kvd, int kvh) {
    const int hi = min(b, pos), n16 = (hi - a) * 16;  // 16 pieces of 16 bytes per row
    for (int i = threadIdx.x; i < n16; i += kAoThreads) {
        const int r = i >> 4, piece = i & 15;
        const int64_t off = (int64_t)(a + r) * kvd + kvh * kAoHd + piece * 8;
        cp_async16(ks + r * kAoRow + piece * 4, kc + off);
        cp_async16(vs + r * kAoRow + piece * 4, vc + off);
    }
}

// x += the warp's o_proj tiles (t0 + warp + 4 i, i < TPW, those below t1) times the B
// fragments bx (token 0), RG tiles at a time: their mma chains advance together, in the
// step form of fewer instructions (steps_mma_token0).  The sums of token 0 (lanes t = 0)
// go to the warp's rows of shared memory ob (TPW · 16 floats), then each lane adds four
// rows into x with one vector atomic.  This phase is arithmetic on few warps while the
// DRAM idles: one tile's chain at a time in the GEMV's exact form took ~3 µs per layer of
// the 7B decode; gathering the rows by shuffles (8 per tile) and adding them from two lanes
// per tile took 2.5 µs of warp 0's time against 1.6 this way (with the relaxed arrive and the
// late cache row of attn_o_kernel: decode 0.8% faster, build against build; docs/PERFORMANCE.md,
// session 11).
template <int RG, int TPW>
__device__ __forceinline__ void o_proj_tiles(const AoArgs &A, const Step (&ws)[TPW], const uint32_t (&bx)[4][4], int t0, int t1,
                                             int warp, int lane, float *ob) {
    const int g = lane >> 2, t = lane & 3;
    float sa, sb;
    frag_col0_sums(bx, &sa, &sb);
#pragma unroll
    for (int i0 = 0; i0 < TPW; i0 += RG) {
        if (t0 + warp + 4 * i0 >= t1) break;  // and every later tile: their rows of ob are not read
        float acc[RG][4];
        Step st[RG];
        int zb[RG];
#pragma unroll
        for (int r = 0; r < RG; r++) {
            acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0.f;
            st[r] = ws[i0 + r], zb[r] = A.zero_base;
        }
        steps_mma_token0<RG>(acc, st, bx, zb, sa, sb);
#pragma unroll
        for (int r = 0; r < RG; r++)  // rows g and g + 8 of tile i0 + r
            if (t == 0) ob[(i0 + r) * 16 + g] = acc[r][0], ob[(i0 + r) * 16 + g + 8] = acc[r][2];
    }
    __syncwarp();
    for (int j = lane; j < TPW * 4; j += 32) {  // rows 4 (j % 4) .. + 3 of the warp's tile j / 4
        const int tile = t0 + warp + 4 * (j >> 2), row = tile * 16 + 4 * (j & 3);
        if (tile >= t1) continue;
        const float4 v4 = reinterpret_cast<const float4 *>(ob)[j];
        const float v[4] = {v4.x, v4.y, v4.z, v4.w};
        if (row + 3 < A.out) red_add4(A.x + row, v);
        else
            for (int u = 0; u < 4; u++)
                if (row + u < A.out) atomicAdd(A.x + row + u, v[u]);
    }
}

template <int TPW>
__global__ void __cluster_dims__(kAoCluster, 1, 1) __launch_bounds__(kAoThreads)
    attn_o_kernel(const __grid_constant__ AoArgs A) {
    BlockTrace bt = trace_begin();
    pdl_trigger();
    if ((int)blockIdx.x >= A.n_heads * kAoCluster) {  // a prefetching block (clusters of their own)
        l2_prefetch_next(A, bt);
        return;
    }
    extern __shared__ __align__(16) unsigned char smem[];
    const int CH = A.chunk;
    uint32_t *ks = reinterpret_cast<uint32_t *>(smem);                   // (CH, kAoRow) half2 of K rows
    uint32_t *vs = ks + CH * kAoRow;                                     // (CH, kAoRow) half2 of V rows
    float *sc = reinterpret_cast<float *>(vs + CH * kAoRow);             // (CH) weights of the chunk
    __shared__ __align__(16) float qs[kAoHd];
    __shared__ float qc[kAoHd / 2], qsn[kAoHd / 2];
    __shared__ __align__(16) float opart[kAoHd];
    __shared__ float red[4];
    __shared__ __align__(16) float vpart[4 * kAoHd];  // the 4 warps' weighted values
    __shared__ __align__(16) uint32_t frw[64];  // the head's output as B fragments (token 0, one block of 128)
    // the cluster's partials, pushed here by every block (rank r: o 0..127, m, l, 2 unused)
    // with st.async, complete when xbar has seen their bytes
    __shared__ __align__(16) float xin[kAoCluster][kAoXRow];
    __shared__ __align__(8) uint64_t xbar;

    const unsigned c = cluster_rank();
    const int h = (int)blockIdx.x / kAoCluster, tid = threadIdx.x;
    const int kvh = h / (A.n_heads / A.n_kv), kvd = A.n_kv * kAoHd;
    const int pos = *A.pos0, len = pos + 1;
    const int P = (len + kAoCluster - 1) / kAoCluster, p0 = (int)c * P, p1 = min(len, p0 + P);
    // o_proj: tiles [t0, t1) of input block h
    const int t0 = (int)c * A.tpb, t1 = min(A.tiles, t0 + A.tpb);
    // warp w's tiles t0 + w + 4i: their codes and records into registers (TPW steps)
    const int lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    Step ws[TPW];
#pragma unroll
    for (int i = 0; i < TPW; i++) {
        const int tile = t0 + warp + 4 * i;
        ws[i].a = ws[i].b = make_uint4(0, 0, 0, 0), ws[i].s = ws[i].z = 0;  // past t1: multiplied in a group, not added
        if (tile < t1)
            ws[i] = load_step(A.qw + ((int64_t)tile * A.n_heads * 16 + g) * 4 + t, A.meta + (int64_t)tile * meta_tile_bytes(A.n_heads),
                              A.n_heads, h, g);
    }
    if (tid == 0) {  // one arrival (now), and the bytes of the 8 partials
        mbar_init(&xbar, 1);
        mbar_fence_init();
        mbar_arrive_expect(&xbar, kAoCluster * kAoXRow * 4);
    }
    // xbar initialized (its fence is the release): waited for before the first push; a
    // releasing arrive here would wait for the o_proj codes' loads above
    cluster_arrive_relaxed();
    if (p0 < p1) load_rows(ks, vs, A.kc, A.vc, p0, min(p1, p0 + CH), pos, kvd, kvh);
    cp_async_commit();
    if (tid < kAoHd / 2) {
        const float a = (float)pos * A.inv_freq[tid];
        qc[tid] = cosf(a), qsn[tid] = sinf(a);
    }
    pdl_wait();
    trace_wait(bt);
    __syncthreads();  // qc, qsn

    const bool writer = h % (A.n_heads / A.n_kv) == 0;  // of this step's cache row
    uint32_t knew = 0, vnew = 0;                          // this step's k, v (dims 2·tid, +1), rotated, fp16
    if (p0 <= pos && pos < p1 && tid < 64) {
        const float *kx = A.k_in + kvh * kAoHd, *vx = A.v_in + kvh * kAoHd;
        float r[2];
#pragma unroll
        for (int e2 = 0; e2 < 2; e2++) {  // as rope_kv_kernel: rotate_half pairs (j, j + 64), the query's angles
            const int e = 2 * tid + e2, jj = e < 64 ? e : e - 64;
            const float cs = qc[jj], sn = qsn[jj];
            r[e2] = e < 64 ? kx[e] * cs - kx[e + 64] * sn : kx[e] * cs + kx[e - 64] * sn;
        }
        const __half2 kh = __floats2half2_rn(r[0], r[1]), vh = __floats2half2_rn(vx[2 * tid], vx[2 * tid + 1]);
        knew = *reinterpret_cast<const uint32_t *>(&kh), vnew = *reinterpret_cast<const uint32_t *>(&vh);
    }
    if (tid < kAoHd / 2) {  // the query, rotated
        const float *qv = A.q + h * kAoHd;
        const float x0 = qv[tid], x1 = qv[tid + 64];
        qs[tid] = x0 * qc[tid] - x1 * qsn[tid];
        qs[tid + 64] = x1 * qc[tid] + x0 * qsn[tid];
    }
    ao_mark(bt, A, 1);

    // the block's positions, chunk by chunk, with a running max and sum
    float m = -INFINITY, l = 0.f, o = 0.f;  // o: dimension tid
    for (int a = p0; a < p1; a += CH) {
        const int b = min(p1, a + CH), n = b - a;
        if (a != p0) {
            __syncthreads();  // every thread is done with the previous chunk
            load_rows(ks, vs, A.kc, A.vc, a, b, pos, kvd, kvh);
            cp_async_commit();
        }
        if (pos >= a && pos < b && tid < 64) ks[(pos - a) * kAoRow + tid] = knew, vs[(pos - a) * kAoRow + tid] = vnew;
        cp_async_wait_all();
        __syncthreads();
        float s = -INFINITY;
        if (tid < n) {  // score of position a + tid: 8 dimensions per step (16 bytes of the row, q broadcast)
            const uint4 *kr = reinterpret_cast<const uint4 *>(ks + tid * kAoRow);
            const float4 *q4 = reinterpret_cast<const float4 *>(qs);
            float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
#pragma unroll 4
            for (int w = 0; w < kAoHd / 8; w++) {
                const uint4 k = kr[w];
                const float4 qa = q4[2 * w], qb = q4[2 * w + 1];
                const float2 k0 = __half22float2(*reinterpret_cast<const __half2 *>(&k.x)),
                             k1 = __half22float2(*reinterpret_cast<const __half2 *>(&k.y)),
                             k2 = __half22float2(*reinterpret_cast<const __half2 *>(&k.z)),
                             k3 = __half22float2(*reinterpret_cast<const __half2 *>(&k.w));
                d0 = fmaf(qa.x, k0.x, d0), d1 = fmaf(qa.y, k0.y, d1), d2 = fmaf(qa.z, k1.x, d2), d3 = fmaf(qa.w, k1.y, d3);
                d0 = fmaf(qb.x, k2.x, d0), d1 = fmaf(qb.y, k2.y, d1), d2 = fmaf(qb.z, k3.x, d2), d3 = fmaf(qb.w, k3.y, d3);
            }
            s = ((d0 + d1) + (d2 + d3)) * A.scale;
        }
        const float mn = fmaxf(m, block4_reduce<true>(s, red));
        const float e = tid < n ? expf(s - mn) : 0.f;
        sc[tid] = e;
        const float resc = m > -INFINITY ? expf(m - mn) : 0.f;
        l = l * resc + block4_reduce<false>(e, red);  // its barriers also publish sc[]
        m = mn;
        // the weighted values: warp w takes positions w, w + 4, ..., a lane 4 dimensions (one
        // 8-byte load of a row), the 4 warps' sums added in fixed order (a thread per
        // dimension over all positions did 4x the shared loads: ~1% of the 7B decode step)
        {
            float4 o4 = make_float4(0.f, 0.f, 0.f, 0.f);
            const uint2 *vr = reinterpret_cast<const uint2 *>(vs) + lane;
            for (int j = warp; j < n; j += 4) {
                const uint2 v = vr[j * (kAoRow / 2)];
                const float2 v0 = __half22float2(*reinterpret_cast<const __half2 *>(&v.x)),
                             v1 = __half22float2(*reinterpret_cast<const __half2 *>(&v.y));
                const float w = sc[j];
                o4.x = fmaf(w, v0.x, o4.x), o4.y = fmaf(w, v0.y, o4.y), o4.z = fmaf(w, v1.x, o4.z), o4.w = fmaf(w, v1.y, o4.w);
            }
            reinterpret_cast<float4 *>(vpart + warp * kAoHd)[lane] = o4;
            __syncthreads();
            o = o * resc + ((vpart[tid] + vpart[kAoHd + tid]) + (vpart[2 * kAoHd + tid] + vpart[3 * kAoHd + tid]));
        }
    }
    opart[tid] = o;
    __syncthreads();
    ao_mark(bt, A, 2);  // the block's partial is written
    cluster_wait();     // every block's xbar is initialized (long since)
    // push the partial to every block of the head (itself too): warp w to ranks 2w, 2w + 1,
    // a lane 4 values, lane 0 also (m, l).  Each block then waits for the 8 partials on its own
    // barrier, where a cluster barrier and remote loads after it were two more trips
    for (int rr = 0; rr < 2; rr++) {
        const unsigned r = 2 * (unsigned)warp + (unsigned)rr, row = dsmem_addr(&xin[c][0], r), bar = dsmem_addr(&xbar, r);
        dsmem_push4(row + 16 * lane, reinterpret_cast<const float4 *>(opart)[lane], bar);
        if (lane == 0) dsmem_push4(row + 4 * kAoHd, make_float4(m, l, 0.f, 0.f), bar);
    }
    cluster_arrive_relaxed();  // (the last barrier: no block leaves while its pushes may be in flight)
    mbar_wait(&xbar, 0);
    ao_mark(bt, A, 3);
    // the head's output: the 8 partials rescaled to the common max, in rank order
    float mc[kAoCluster], lc[kAoCluster], oc[kAoCluster], M = -INFINITY;
#pragma unroll
    for (int r = 0; r < kAoCluster; r++) mc[r] = xin[r][kAoHd], lc[r] = xin[r][kAoHd + 1], oc[r] = xin[r][tid];
#pragma unroll
    for (int r = 0; r < kAoCluster; r++) M = fmaxf(M, mc[r]);
    float L = 0.f, v = 0.f;
#pragma unroll
    for (int r = 0; r < kAoCluster; r++) {
        const float w = mc[r] > -INFINITY ? expf(mc[r] - M) : 0.f;
        L = fmaf(w, lc[r], L);
        v = fmaf(w, oc[r], v);
    }
    // this step's cache row, written only now: before a cluster barrier's release it would
    // make the barrier wait for these global stores (session 11)
    if (writer && p0 <= pos && pos < p1 && tid < 64) {
        reinterpret_cast<uint32_t *>(A.kc + (int64_t)pos * kvd + kvh * kAoHd)[tid] = knew;
        reinterpret_cast<uint32_t *>(A.vc + (int64_t)pos * kvd + kvh * kAoHd)[tid] = vnew;
    }
    ao_mark(bt, A, 4);  // the head's output is merged
    reinterpret_cast<__half *>(frw)[cuq_frag_half(0, tid, 1)] = __float2half_rn(v / L);
    __syncthreads();

    // o_proj: warp w's tiles times the B fragments of token 0 (lanes g = 0)
    uint32_t bx[4][4];
#pragma unroll
    for (int p = 0; p < 4; p++)
#pragma unroll
        for (int w = 0; w < 4; w++) bx[p][w] = g == 0 ? frw[t * 16 + p * 4 + w] : 0u;
    ao_mark(bt, A, 5);
    __shared__ __align__(16) float obuf[4][TPW * 16];  // each warp's o_proj sums (o_proj_tiles)
    o_proj_tiles<TPW < kAoGroup ? TPW : kAoGroup, TPW>(A, ws, bx, t0, t1, warp, lane, obuf[warp]);
    ao_mark(bt, A, 6);
    cluster_wait();  // no block leaves while its pushes may be in flight
    trace_end(bt, 5, (unsigned)(A.n_heads * kAoCluster));
}

int ao_mode = -1;  // GPTQ_CUDA_ATT_O=0: off (default on where it applies)
int ao_prefetch = -1;  // GPTQ_CUDA_ATT_PF=0: no L2 prefetch of the next gate/up (default on)
int ao_chunk = 0;  // > 0: cache rows per chunk (tests), else by max_seq

}  // namespace

CU_TRACE_BINDER(trace_bind_attn_o)

extern "C" void cuk_attention_o_set_prefetch(int on) { ao_prefetch = on < 0 ? -1 : on != 0; }

extern "C" void cuk_attention_o_set(int on, int chunk) {
    ao_mode = on < 0 ? -1 : on != 0;
    ao_chunk = chunk > 0 ? chunk : 0;
}

extern "C" int cuk_attention_o_ok(const cuq_layer *o, int n_heads, int n_kv, int hd, int max_seq) {
    if (ao_mode < 0) {
        const char *e = getenv("GPTQ_CUDA_ATT_O");
        ao_mode = !(e && strcmp(e, "0") == 0);
    }
    return ao_mode && hd == kAoHd && n_kv > 0 && n_heads % n_kv == 0 && max_seq > 0 && cuq_frag_ok(o) &&
           !o->perm && o->in_pad == (int64_t)n_heads * kAoHd && o->row_blocks == n_heads;
}

extern "C" int cuk_attention_o_decode(const float *q, const float *k, const float *v, uint16_t *kc, uint16_t *vc,
                                      const float *inv_freq_host, const int *pos0, const cuq_layer *o, float *x, int max_seq,
                                      int n_heads, int n_kv, int hd, const cuq_layer *next_gate, const cuq_layer *next_up,
                                      cudaStream_t s) {
    if (!cuk_attention_o_ok(o, n_heads, n_kv, hd, max_seq))
        return gptq_fail("attention + o_proj: not for this layer (head_dim %d, o_proj %lld x %lld, context %d)", hd,
                         (long long)o->out, (long long)o->in, max_seq);
    AoArgs A;
    A.q = q, A.k_in = k, A.v_in = v;
    A.kc = reinterpret_cast<__half *>(kc), A.vc = reinterpret_cast<__half *>(vc);
    memcpy(A.inv_freq, inv_freq_host, sizeof A.inv_freq);
    A.pos0 = pos0, A.x = x;
    A.qw = reinterpret_cast<const uint4 *>(o->qw), A.meta = o->meta;
    A.out = (int)o->out, A.tiles = (int)((o->out + 15) / 16), A.tpb = (A.tiles + kAoCluster - 1) / kAoCluster;
    A.zero_base = o->zero_base, A.n_heads = n_heads, A.n_kv = n_kv;
    // one chunk holds a block's positions at any step up to a context of 8 chunks; past that
    // the blocks loop over chunks of kAoMaxChunk rows (tests ask for smaller chunks)
    const int ch = ao_chunk > 0 ? ao_chunk : std::min(kAoMaxChunk, (max_seq + kAoCluster - 1) / kAoCluster);
    A.chunk = ch, A.scale = 1.0f / sqrtf((float)hd);
    static int marks = -1;
    if (marks < 0) {
        const char *e = getenv("GPTQ_CUDA_AO_MARKS");
        marks = e && *e ? atoi(e) : 0;
    }
    A.marks = marks;
    // the next gate/up pair's codes into L2 by blocks of their own: steps 1-3 (blocks 8-31)
    // of its blocks' first gate tiles, step 0 being what those blocks ask for before their
    // wait, and as many whole up tiles from 1.25 units on (the blocks' second and third
    // units).  Why not up's first tiles too: with both halves of every block's first unit in
    // L2 the pair's first steps leave the DRAM idle and the later ones all queue on it;
    // spread over the units, the DRAM is busy from the first step.  7B decode: the pair
    // 17.6 against 19.0 µs per layer; 1.771 / 1.773 against 1.813 / 1.810 ms per token,
    // build against build (docs/PERFORMANCE.md, session 13).
    int pf_blocks = 0;
    A.pf_tiles = 0;
    if (ao_prefetch < 0) {
        const char *e = getenv("GPTQ_CUDA_ATT_PF");
        ao_prefetch = !(e && strcmp(e, "0") == 0);
    }
    if (ao_prefetch && next_gate && next_up && cuq_frag_ok(next_gate) && cuq_frag_ok(next_up) &&
        next_gate->row_blocks == next_up->row_blocks) {
        const int rb = (int)next_gate->row_blocks;
        A.pf[0] = reinterpret_cast<const char *>(next_gate->qw), A.pf[1] = reinterpret_cast<const char *>(next_up->qw);
        A.pf_stride = (int64_t)rb * 1024;
        // GPTQ_CUDA_ATT_PF_BLOCKS / _UNITS / _DELAY override the blocks, the units taken
        // (1: a tile of each pair block) and the delay; _GATE_FIRST / _UP_FIRST the first
        // tile taken of each layer, _UP_FROM the row block up's start at (benchmarks)
        static int blocks = -1, units = 1, delay = kAoPfDelayNs, gate_first = 0, up_first = -1, up_from = 0;
        if (blocks < 0) {
            const char *e;
            blocks = (e = getenv("GPTQ_CUDA_ATT_PF_BLOCKS")) && atoi(e) > 0 ? atoi(e) / kAoCluster * kAoCluster : kAoPfBlocks;
            if ((e = getenv("GPTQ_CUDA_ATT_PF_UNITS")) && atoi(e) > 0) units = atoi(e);
            if ((e = getenv("GPTQ_CUDA_ATT_PF_DELAY")) && atoi(e) >= 0) delay = atoi(e);
            if ((e = getenv("GPTQ_CUDA_ATT_PF_GATE_FIRST")) && atoi(e) >= 0) gate_first = atoi(e);
            if ((e = getenv("GPTQ_CUDA_ATT_PF_UP_FIRST")) && atoi(e) >= 0) up_first = atoi(e);
            if ((e = getenv("GPTQ_CUDA_ATT_PF_UP_FROM")) && atoi(e) >= 0) up_from = atoi(e);
        }
        const int grid = cuq_swiglu_frag_grid(next_gate, 1), tiles = (int)((next_gate->out + 15) / 16);
        A.pf_tiles = units * grid < tiles ? units * grid : tiles;
        A.pf_ntiles = tiles;
        A.pf_first[0] = gate_first % tiles;
        A.pf_first[1] = (up_first < 0 ? grid + grid / 4 : up_first) % tiles;
        // gate's from the blocks' step 1 (step 0 is what they ask for themselves), up's whole
        // (no block asks for a later unit's step 0 early); small layers: whole tiles
        A.pf_to = (rb < 32 ? rb : 32) * 1024;
        A.pf_from[0] = rb > 8 ? 8 * 1024 : 0;
        A.pf_from[1] = up_from * 1024 < A.pf_to ? up_from * 1024 : 0;
        A.pf_delay = delay;
        pf_blocks = blocks;
    }
    // At most kAoBlocksPerSM blocks per SM (shared memory padded so that one more does not
    // fit; GPTQ_CUDA_AO_BPS overrides): on the H100, 7B decode at 3 per SM took 2.047 /
    // 2.049 ms per token, at 4 (the registers' limit) 2.082 / 2.085, at 2 2.238 / 2.238.
    static int bps = -1, per_sm = 0;
    if (bps < 0) {
        const char *e = getenv("GPTQ_CUDA_AO_BPS");
        bps = e && atoi(e) > 0 ? atoi(e) : kAoBlocksPerSM;
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess)
            per_sm = 0;
    }
    const int tpw = (A.tpb + 3) / 4;
    void (*kern)(AoArgs) = tpw <= 2 ? attn_o_kernel<2> : tpw <= 4 ? attn_o_kernel<4> : tpw <= 8 ? attn_o_kernel<8> : attn_o_kernel<16>;
    // the padding counts the kernel's static shared memory: a block's total is what decides
    // which blocks (its own, the next gate/up's) share an SM
    static int total = -1;
    if (total < 0) {
        const char *e = getenv("GPTQ_CUDA_AO_SMEM_TOTAL");
        total = e && atoi(e) > 0 ? atoi(e) : 0;
    }
    cudaFuncAttributes fa;
    const size_t st = cudaFuncGetAttributes(&fa, kern) == cudaSuccess ? fa.sharedSizeBytes : 0;
    size_t smem = (size_t)ch * kAoRow * 8 + (size_t)kAoMaxChunk * 4;
    const size_t pad = total > 0 ? (size_t)total : per_sm > 0 ? (size_t)per_sm / (bps + 1) + 1024 : 0;
    if (pad > smem + st && pad <= 200 * 1024) smem = pad - st;
    static size_t smem_set = 0;
    if (smem + st > 48 * 1024 && smem > smem_set) {
        for (auto kf : {attn_o_kernel<2>, attn_o_kernel<4>, attn_o_kernel<8>, attn_o_kernel<16>})
            if (cu_check(cudaFuncSetAttribute(kf, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                         "attention + o_proj shared memory"))
                return -1;
        smem_set = smem;
    }
    // the cluster shape is the kernel's own (__cluster_dims__)
    return cu_check(cu_launch(kern, dim3((unsigned)(n_heads * kAoCluster + pf_blocks)), dim3(kAoThreads), smem, s, A),
                    "attention + o_proj");
}
