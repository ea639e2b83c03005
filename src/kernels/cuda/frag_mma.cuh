// The fragment-order GEMV's step (qgemv_frag.cu), shared with the fused attention +
// o_proj of decode (attn_o.cu): one 64-byte block of a 16-row tile's 4-bit codes times the
// B fragments of 128 activations on the tensor cores, with the block's scales and zero
// points from its 48-byte record (cuq_layer.meta).
#ifndef GPTQ_KERNELS_CUDA_FRAG_MMA_CUH
#define GPTQ_KERNELS_CUDA_FRAG_MMA_CUH

#include <cuda_fp16.h>
#include <stdint.h>

namespace frag {

constexpr int kMetaBytes = 48;  // per (tile, block): 8 half2 scales (rows g, g+8), 8 zero-point byte pairs

__device__ __forceinline__ uint32_t lop_h(uint32_t w, uint32_t mask) {
    uint32_t r;  // (w & mask) | 0x64006400: 1024 + the masked bits in each half
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "r"(mask), "n"(0x64006400u));
    return r;
}

__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The codes of one step of one tile: rows g (a) and g + 8 (b), quarter t; its record.
struct Step {
    uint4 a, b;
    uint32_t s;  // half2 scales of rows g, g + 8
    uint32_t z;  // zero points of rows g (bits 0-7), g + 8 (bits 8-15)
};

__device__ __forceinline__ Step load_step(const uint4 *q, const uint8_t *m, int b, int g) {
    Step st;
    st.a = __ldcs(q + (int64_t)b * 64);
    st.b = __ldcs(q + (int64_t)b * 64 + 32);
    st.s = __ldg(reinterpret_cast<const uint32_t *>(m + (int64_t)b * kMetaBytes) + g);
    st.z = __ldg(reinterpret_cast<const uint16_t *>(m + (int64_t)b * kMetaBytes + 32) + g);
    return st;
}

// acc += the step's tile times the B fragments bx (pairs p of words w); xs = Σx of the
// lane's tokens (computed once per step by the caller).
__device__ __forceinline__ void step_mma(float (&acc)[4], const Step &st, const uint32_t (&bx)[4][4], const float (&xs)[4],
                                         int zero_base) {
    const uint32_t wa[4] = {st.a.x, st.a.y, st.a.z, st.a.w}, wb[4] = {st.b.x, st.b.y, st.b.z, st.b.w};
    float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int m = 0; m < 8; m++) {
        const int i0 = 2 * m, i1 = 2 * m + 1;
        const int w0 = i0 >> 2, p0 = i0 & 3, w1 = i1 >> 2, p1 = i1 & 3;
        mma_f16(d, lop_h(wa[w0] >> (4 * p0), 0x000F000Fu), lop_h(wb[w0] >> (4 * p0), 0x000F000Fu),
                lop_h(wa[w1] >> (4 * p1), 0x000F000Fu), lop_h(wb[w1] >> (4 * p1), 0x000F000Fu), bx[p0][w0], bx[p1][w1]);
    }
    const float2 s = __half22float2(*reinterpret_cast<const __half2 *>(&st.s));
    const float za = 1024.f + (float)((st.z & 0xFFu) + zero_base), zb = 1024.f + (float)((st.z >> 8) + zero_base);
    acc[0] = fmaf(s.x, d[0] - za * xs[0], acc[0]);
    acc[1] = fmaf(s.x, d[1] - za * xs[1], acc[1]);
    acc[2] = fmaf(s.y, d[2] - zb * xs[2], acc[2]);
    acc[3] = fmaf(s.y, d[3] - zb * xs[3], acc[3]);
}

__device__ __forceinline__ void sum_x(float (&xs)[4], const uint32_t (&bx)[4][4]) {
    xs[0] = xs[1] = xs[2] = xs[3] = 0.f;
#pragma unroll
    for (int m = 0; m < 8; m++) {
        const int i0 = 2 * m, i1 = 2 * m + 1;
        mma_f16(xs, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u, bx[i0 & 3][i0 >> 2], bx[i1 & 3][i1 >> 2]);
    }
}

}  // namespace frag

#endif
