// Shared by the .cu files: the library's error reporting (a C header) with C linkage, and
// programmatic dependent launch.
#ifndef GPTQ_KERNELS_CUDA_CU_COMMON_CUH
#define GPTQ_KERNELS_CUDA_CU_COMMON_CUH

#include <cuda_runtime.h>

#include <cstdint>

#include <utility>

extern "C" {
#include "core/error.h"
}

// Grid size for a grid-stride loop over n elements with 256-thread blocks.
static inline unsigned cu_grid(long long n) {
    long long g = (n + 255) / 256;
    return (unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

// Index of the 64-byte block b of row `row` in a layer's codes (cuq.h): row-major qk
// layout, or the 16-row tile layout (tiled != 0), where the tile's rows' blocks b are
// adjacent: tile row/16, then b, then row%16.
__device__ __forceinline__ long long cuq_block(int row, int b, int row_blocks, int tiled) {
    return tiled ? ((long long)(row >> 4) * row_blocks + b) * 16 + (row & 15) : (long long)row * row_blocks + b;
}

// Index, in halves, of input i of token k in fragment order (cuq.h: cuk_frag16) for
// rb = in_pad / 128 blocks per token: word (k, b, t, 4p + w), low half for i % 128 < 64.
__device__ __forceinline__ long long cuq_frag_half(long long k, int i, int rb) {
    const int b = i >> 7, q = i & 63, hi = (i >> 6) & 1;
    const int p = ((q >> 5) << 1) | ((q >> 4) & 1), t = (q >> 2) & 3, w = q & 3;
    return 2 * (((k * rb + b) * 4 + t) * 16 + p * 4 + w) + hi;
}

// Sum (max) over a warp; every lane gets the result.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Asynchronous copies global -> shared memory (cp.async): the thread goes on at once; its
// copies have landed after cp_async_wait_all(), and other threads see them after a barrier.
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async4(void *smem, const void *gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }
// All but the newest N groups of this thread have landed.
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// Shared-memory barriers and bulk copies (sm_90 TMA without a tensor map): a copy of n
// bytes (16-byte multiples, 16-byte aligned) from global into shared memory completes its
// bytes on an mbarrier; a barrier's phase completes when its arrivals are in and the bytes
// it expects have landed.
__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
// An arrival, and bytes the phase waits for.
__device__ __forceinline__ void mbar_arrive_expect(uint64_t *bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, unsigned parity) {
    asm volatile(
        "{\n .reg .pred p;\n WAIT_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra WAIT_%=;\n}\n" ::"r"(
            smem_u32(bar)),
        "r"(parity)
        : "memory");
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(bar))
                 : "memory");
}

// Block timeline trace (GPTQ_CUDA_TRACE, llama_cuda.c): while a trace buffer is bound, thread 0
// of each block of the instrumented decode kernels records its SM, when it started, when its
// dependency wait returned and when it finished (%globaltimer, ns).  Buffer: a header of
// two 32-bit words (records written, capacity), then the records.  g_trace is per
// translation unit (no relocatable device code): cuk_trace_bind (launch.cu) sets them all.
struct TraceRec {
    unsigned tag, block, smid, grid;
    unsigned long long t0, tw, te, ta, tb;  // ta, tb: two marks inside the kernel (trace_mark; 0 if none)
};
static __device__ unsigned *g_trace;
__device__ __forceinline__ unsigned long long gtimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
struct BlockTrace {
    unsigned long long t0, tw, ta, tb;
    bool on;
};
__device__ __forceinline__ BlockTrace trace_begin() {
    BlockTrace b;
    b.on = g_trace != nullptr && threadIdx.x == 0 && threadIdx.y == 0;
    b.t0 = b.on ? gtimer() : 0;
    b.tw = b.t0;
    b.ta = b.tb = 0;
    return b;
}
__device__ __forceinline__ void trace_wait(BlockTrace &b) {
    if (b.on) b.tw = gtimer();
}
__device__ __forceinline__ void trace_mark(BlockTrace &b, int which) {
    if (b.on) (which ? b.tb : b.ta) = gtimer();
}
// grid > 0: the blocks of this kind in the launch (a launch of two kinds of blocks).
__device__ __forceinline__ void trace_end(const BlockTrace &b, unsigned tag, unsigned grid = 0) {
    if (!b.on) return;
    const unsigned i = atomicAdd(g_trace, 1u);
    if (i >= g_trace[1]) return;
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    TraceRec *r = reinterpret_cast<TraceRec *>(g_trace + 4) + i;
    r->tag = tag, r->block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z), r->smid = smid;
    r->grid = grid ? grid : gridDim.x * gridDim.y * gridDim.z;
    r->t0 = b.t0, r->tw = b.tw, r->te = gtimer(), r->ta = b.ta, r->tb = b.tb;
}
#define CU_TRACE_BINDER(name)                                                                                  \
    void name(void *buf) {                                                                                     \
        unsigned *p = static_cast<unsigned *>(buf);                                                            \
        cudaMemcpyToSymbol(g_trace, &p, sizeof p);                                                            \
    }
void trace_bind_model(void *buf);
void trace_bind_frag(void *buf);
void trace_bind_attn_o(void *buf);
void trace_bind_dense(void *buf);

// Thread block clusters (sm_90): this block's rank, the cluster barrier in two halves
// (writes before arrive are seen by every block of the cluster after its wait), a float of
// another block's shared memory.
__device__ __forceinline__ unsigned cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
// Arrival that publishes nothing (the block is only done reading others' shared memory):
// no wait for this thread's earlier writes to be performed.
__device__ __forceinline__ void cluster_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }
// A float in block `rank`'s shared memory at the address of `p` in this block's.
__device__ __forceinline__ float dsmem_load(const float *p, unsigned rank) {
    unsigned local = (unsigned)__cvta_generic_to_shared(p), remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
    return v;
}

// The address of `p` (this block's shared memory) in block `rank`'s, as a shared::cluster address.
__device__ __forceinline__ unsigned dsmem_addr(const void *p, unsigned rank) {
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(smem_u32(p)), "r"(rank));
    return remote;
}
// 16 bytes into another block's shared memory (dsmem_addr), completing 16 bytes on its
// mbarrier at bar (dsmem_addr too): the receiver waits on the barrier, not on a cluster barrier.
__device__ __forceinline__ void dsmem_push4(unsigned dst, float4 v, unsigned bar) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];" ::"r"(dst), "f"(v.x),
                 "f"(v.y), "f"(v.z), "f"(v.w), "r"(bar)
                 : "memory");
}

// x[0..3] += v[0..3] as one vector reduction at L2 (sm_90; x 16-byte aligned).
__device__ __forceinline__ void red_add4(float *x, const float (&v)[4]) {
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(x), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3]) : "memory");
}

// Programmatic dependent launch (sm_90).  A kernel launched by cu_launch may start while
// the kernel before it in the stream still runs: it first does what depends on nothing
// the earlier kernels write (a GEMV requests its weights and scales), then pdl_wait()
// returns once the previous kernel has completed and its writes are visible.  Every
// kernel launched this way calls pdl_wait() before it reads or writes activations, so the
// dependency is also transitive (a kernel completes only after its own wait returned).
// pdl_trigger() lets the next kernel launch as soon as every block of this one has
// started; without it the next kernel starts when this one ends.  Both are no-ops for
// kernels launched plainly, and on GPUs before sm_90.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether cu_launch asks for programmatic serialization (launch.cu: on unless
// GPTQ_CUDA_PDL=0 or cuk_set_pdl(0)).
bool cu_pdl_on();
// GPTQ_CUDA_CARVEOUT=N (0..100, benchmarks): the shared-memory carveout every cu_launch
// kernel prefers (cudaFuncAttributePreferredSharedMemoryCarveout); -1 (default): the driver's.
int cu_carveout();

// kernel<<<grid, block, smem, s>>>(args...), with the programmatic-serialization
// attribute when cu_pdl_on().  Returns the launch's error.
template <typename... P, typename... A>
static inline cudaError_t cu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = cu_pdl_on() ? 1 : 0;
    if (cu_carveout() >= 0) cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cu_carveout());
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

#endif
