// What one kernel-to-kernel dependency costs in a CUDA graph (docs/PERFORMANCE.md, issue 8):
// chains of 64 small dependent kernels (4096 floats, `blocks` blocks of 256 threads), launched
//   - plainly (the graph's own edges),
//   - with programmatic dependent launch, each kernel waiting in griddepcontrol.wait,
//   - with programmatic dependent launch, each kernel polling a counter that every block of
//     the previous kernel increments after its writes (release / acquire at GPU scope).
// Build and run on the GPU machine: nvcc -O3 -arch=sm_90 -o edge bench/cuda_edge_latency.cu && ./edge
// (bench/gpu.sh step `edge`).  Not part of the library.
#include <cuda_runtime.h>

#include <cstdio>

namespace {

__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

__device__ __forceinline__ unsigned long long load_acquire(const unsigned long long *p) {
    unsigned long long v;
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

// POLL: wait until *prev reaches `target` (the previous kernel's block count), then count
// this block in *mine; otherwise wait in griddepcontrol.wait (a no-op without PDL).
template <bool POLL>
__global__ void step_kernel(const float *x, float *y, int n, const unsigned long long *prev, unsigned long long *mine,
                            unsigned long long target) {
    pdl_trigger();
    if (!POLL) pdl_wait();
    if (POLL && prev) {
        if (threadIdx.x == 0)
            while (load_acquire(prev) < target) __nanosleep(20);
        __syncthreads();
    }
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = x[i] * 1.0001f + 1e-7f;
    if (POLL) {
        __syncthreads();
        if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(mine, 1ull);
        }
    }
}

bool ok(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return true;
    fprintf(stderr, "cuda_edge_latency: %s: %s\n", what, cudaGetErrorString(e));
    return false;
}

// Microseconds per kernel of a chain of `chain` kernels (best of 17 graph launches); < 0 on error.
float chain_us(bool pdl, bool poll, int blocks, int n, int chain) {
    float *a = nullptr, *b = nullptr, best = -1.f;
    unsigned long long *count = nullptr;
    cudaStream_t s = nullptr;
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (!ok(cudaMalloc(&a, sizeof(float) * n), "malloc") || !ok(cudaMalloc(&b, sizeof(float) * n), "malloc") ||
        !ok(cudaMalloc(&count, sizeof(unsigned long long) * chain), "malloc") || !ok(cudaMemset(a, 0, sizeof(float) * n), "memset") ||
        !ok(cudaStreamCreate(&s), "stream") || !ok(cudaEventCreate(&e0), "event") || !ok(cudaEventCreate(&e1), "event"))
        goto done;
    if (!ok(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "capture")) goto done;
    cudaMemsetAsync(count, 0, sizeof(unsigned long long) * chain, s);
    for (int k = 0; k < chain; k++) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(blocks);
        cfg.blockDim = dim3(256);
        cfg.stream = s;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = pdl ? 1 : 0;
        const float *x = k & 1 ? b : a;
        float *y = k & 1 ? a : b;
        const unsigned long long *prev = k ? count + k - 1 : nullptr;
        if (poll)
            cudaLaunchKernelEx(&cfg, step_kernel<true>, x, y, n, prev, count + k, (unsigned long long)blocks);
        else
            cudaLaunchKernelEx(&cfg, step_kernel<false>, x, y, n, prev, count + k, (unsigned long long)blocks);
    }
    if (!ok(cudaStreamEndCapture(s, &g), "capture") || !ok(cudaGraphInstantiate(&ge, g, 0), "instantiate")) goto done;
    for (int r = 0; r < 20; r++) {
        float ms = 0.f;
        if (!ok(cudaEventRecord(e0, s), "record") || !ok(cudaGraphLaunch(ge, s), "launch") || !ok(cudaEventRecord(e1, s), "record") ||
            !ok(cudaEventSynchronize(e1), "sync") || !ok(cudaEventElapsedTime(&ms, e0, e1), "elapsed")) {
            best = -1.f;
            goto done;
        }
        if (r >= 3 && (best < 0 || ms < best)) best = ms;
    }
    best = best * 1000.f / chain;
done:
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (s) cudaStreamDestroy(s);
    cudaFree(a), cudaFree(b), cudaFree(count);
    return best;
}

}  // namespace

int main() {
    static const int blocks[] = {1, 132, 264, 528, 1056};
    for (int b : blocks) {
        const float plain = chain_us(false, false, b, 4096, 64), wait = chain_us(true, false, b, 4096, 64),
                    poll = chain_us(true, true, b, 4096, 64);
        if (plain < 0 || wait < 0 || poll < 0) return 1;
        printf("edge blocks=%5d: plain %.2f us, PDL + griddepcontrol.wait %.2f us, PDL + counter polling %.2f us per kernel\n", b,
               plain, wait, poll);
    }
    return 0;
}
