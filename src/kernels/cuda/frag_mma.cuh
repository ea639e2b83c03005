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

// Where a tile's records lie (cuq_layer.meta, built by meta_kernel).  A warp of the GEMVs
// takes the tile's blocks b = w, w + 8, w + 16, ... (8 warps; 16 take every other of
// them), so the blocks are grouped by slot w = b % 8, step j = b / 8, and within a slot by
// row pair g: the scales of rows (g, g + 8) at steps j = 0 .. J - 1 lie side by side (J
// words), then the zero-point pairs likewise (J half-words).  A lane's first record load
// of a tile brings its next steps' records into L1 with it (one sector for up to 8
// steps), where a 48-byte record per block cost each step two more requests to L2 and
// DRAM: 7B decode 1.82 against 1.89 ms per token with every record an L1 hit
// (docs/PERFORMANCE.md, session 10).
__host__ __device__ constexpr int meta_steps(int row_blocks) { return (row_blocks + 7) / 8; }  // J
__host__ __device__ constexpr int64_t meta_tile_bytes(int row_blocks) { return (int64_t)8 * meta_steps(row_blocks) * kMetaBytes; }
// Byte offsets in a tile's records of block b's scale word and zero-point pair of row pair g.
__host__ __device__ constexpr int meta_scale_at(int row_blocks, int b, int g) {
    return (b & 7) * meta_steps(row_blocks) * kMetaBytes + (g * meta_steps(row_blocks) + (b >> 3)) * 4;
}
__host__ __device__ constexpr int meta_zero_at(int row_blocks, int b, int g) {
    return (b & 7) * meta_steps(row_blocks) * kMetaBytes + 32 * meta_steps(row_blocks) + (g * meta_steps(row_blocks) + (b >> 3)) * 2;
}

__device__ __forceinline__ uint32_t lop_h(uint32_t w, uint32_t mask) {
    uint32_t r;  // (w & mask) | 0x64006400: 1024 + the masked bits in each half
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "r"(mask), "n"(0x64006400u));
    return r;
}

// Not volatile: independent mma chains may then be interleaved by the compiler.
__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
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

// q: this lane's codes of the tile's block 0; m: the tile's records (meta_tile_bytes apart).
__device__ __forceinline__ Step load_step(const uint4 *q, const uint8_t *m, int row_blocks, int b, int g) {
    Step st;
    st.a = __ldcs(q + (int64_t)b * 64);
    st.b = __ldcs(q + (int64_t)b * 64 + 32);
    st.s = __ldg(reinterpret_cast<const uint32_t *>(m + meta_scale_at(row_blocks, b, g)));
    st.z = __ldg(reinterpret_cast<const uint16_t *>(m + meta_zero_at(row_blocks, b, g)));
    return st;
}

__device__ __forceinline__ uint32_t hsub2(uint32_t a, uint32_t b) {
    uint32_t r;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
__device__ __forceinline__ uint32_t hfma2(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t r;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
__device__ __forceinline__ uint32_t half2_of(float v) {
    const uint32_t h = __half_as_ushort(__float2half_rn(v));
    return h | h << 16;
}

// acc[r] += step st[r] times the B fragments bx (pairs p of words w), for r < R: R tiles
// at the same block of inputs, multiplied with the same fragments.
// Each A register holds code - zero exactly (small integers in fp16), so the mma give
// Σ (q - z) x and the scale is applied once per step in fp32; no Σx is needed (it cost
// eight more mma per step, and the tensor pipe is what bounds a step: docs/PERFORMANCE.md).
// From a word of codes (nibble p of both halves): p = 0 by LOP3 as 1024 + q, minus
// 1024 + z; p = 1 by LOP3 in place as 1024 + 16 q, times 1/16 minus 64 + z in one HFMA2;
// p = 2, 3 the same from the word shifted by 8.  The mma of one tile depend on each other
// (eight per step), so the R chains advance together; each adds in the same order as one
// tile alone, so the sums do not depend on R.
template <int R>
__device__ __forceinline__ void steps_mma(float (&acc)[R][4], const Step (&st)[R], const uint32_t (&bx)[4][4],
                                          const int (&zero_base)[R]) {
    constexpr uint32_t kSixteenth = 0x2C002C00u;  // 1/16 in both halves
    float d[R][4];
    uint32_t zl[R][2], zh[R][2];  // rows g, g + 8: 1024 + z (for p = 0, 2) and -(64 + z) (p = 1, 3)
#pragma unroll
    for (int r = 0; r < R; r++) {
        d[r][0] = d[r][1] = d[r][2] = d[r][3] = 0.f;
        const float za = (float)((int)(st[r].z & 0xFFu) + zero_base[r]), zb = (float)((int)(st[r].z >> 8) + zero_base[r]);
        zl[r][0] = half2_of(1024.f + za), zl[r][1] = half2_of(1024.f + zb);
        zh[r][0] = half2_of(-64.f - za), zh[r][1] = half2_of(-64.f - zb);
    }
#pragma unroll
    for (int w = 0; w < 4; w++) {
        uint32_t xa[R], xb[R];
#pragma unroll
        for (int r = 0; r < R; r++) {  // m = 2w: nibbles 0 (k low) and 1 (k high)
            const uint4 &A = st[r].a, &B = st[r].b;
            xa[r] = w == 0 ? A.x : w == 1 ? A.y : w == 2 ? A.z : A.w;
            xb[r] = w == 0 ? B.x : w == 1 ? B.y : w == 2 ? B.z : B.w;
            mma_f16(d[r], hsub2(lop_h(xa[r], 0x000F000Fu), zl[r][0]), hsub2(lop_h(xb[r], 0x000F000Fu), zl[r][1]),
                    hfma2(lop_h(xa[r], 0x00F000F0u), kSixteenth, zh[r][0]), hfma2(lop_h(xb[r], 0x00F000F0u), kSixteenth, zh[r][1]),
                    bx[0][w], bx[1][w]);
        }
#pragma unroll
        for (int r = 0; r < R; r++) {  // m = 2w + 1: nibbles 2 and 3
            const uint32_t ya = xa[r] >> 8, yb = xb[r] >> 8;
            mma_f16(d[r], hsub2(lop_h(ya, 0x000F000Fu), zl[r][0]), hsub2(lop_h(yb, 0x000F000Fu), zl[r][1]),
                    hfma2(lop_h(ya, 0x00F000F0u), kSixteenth, zh[r][0]), hfma2(lop_h(yb, 0x00F000F0u), kSixteenth, zh[r][1]),
                    bx[2][w], bx[3][w]);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float2 s = __half22float2(*reinterpret_cast<const __half2 *>(&st[r].s));
        acc[r][0] = fmaf(s.x, d[r][0], acc[r][0]);
        acc[r][1] = fmaf(s.x, d[r][1], acc[r][1]);
        acc[r][2] = fmaf(s.y, d[r][2], acc[r][2]);
        acc[r][3] = fmaf(s.y, d[r][3], acc[r][3]);
    }
}

// One token's sums, fewer instructions: for the fused attention's o_proj, where the step's
// arithmetic (not a memory stream) is the critical path, measured ~1.5 µs per layer of the
// 7B decode (docs/PERFORMANCE.md, session 9).  The A registers are LOP3's output alone:
// 1024 + q for nibbles 0 and 2, 1024 + 16 q for nibbles 1 and 3, in two mma chains by
// nibble parity (dA, dB; the B fragments regrouped to match), and the zero point comes out
// with the sums of the B fragments' column 0 over each chain's inputs (sa, sb: the same for
// every tile, made once by frag_col0_sums):
//   Σ (q - z) x = dA + dB / 16 - (1024 + z) sa - (64 + z) sb.
// Only column 0 (token 0: acc[r][0] and acc[r][2] of lanes t = 0) is corrected; the other
// columns are left as garbage.  The cancellation of the 1024 · Σx terms costs ~10 bits of
// the fp32 sums (docs: well below the fp16 inputs' rounding), so this is for one token's
// o_proj, not for the GEMVs, whose sums must not depend on the form.
template <int R>
__device__ __forceinline__ void steps_mma_token0(float (&acc)[R][4], const Step (&st)[R], const uint32_t (&bx)[4][4],
                                                 const int (&zero_base)[R], float sa, float sb) {
    float dA[R][4], dB[R][4];
#pragma unroll
    for (int r = 0; r < R; r++) dA[r][0] = dA[r][1] = dA[r][2] = dA[r][3] = dB[r][0] = dB[r][1] = dB[r][2] = dB[r][3] = 0.f;
#pragma unroll
    for (int w = 0; w < 4; w++) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            const uint4 &A = st[r].a, &B = st[r].b;
            const uint32_t xa = w == 0 ? A.x : w == 1 ? A.y : w == 2 ? A.z : A.w;
            const uint32_t xb = w == 0 ? B.x : w == 1 ? B.y : w == 2 ? B.z : B.w;
            const uint32_t ya = xa >> 8, yb = xb >> 8;
            mma_f16(dA[r], lop_h(xa, 0x000F000Fu), lop_h(xb, 0x000F000Fu), lop_h(ya, 0x000F000Fu), lop_h(yb, 0x000F000Fu), bx[0][w],
                    bx[2][w]);
            mma_f16(dB[r], lop_h(xa, 0x00F000F0u), lop_h(xb, 0x00F000F0u), lop_h(ya, 0x00F000F0u), lop_h(yb, 0x00F000F0u), bx[1][w],
                    bx[3][w]);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float2 s = __half22float2(*reinterpret_cast<const __half2 *>(&st[r].s));
        const float za = (float)((int)(st[r].z & 0xFFu) + zero_base[r]), zb = (float)((int)(st[r].z >> 8) + zero_base[r]);
        const float ra = fmaf(dB[r][0], 0.0625f, dA[r][0]) - fmaf(1024.f + za, sa, (64.f + za) * sb);
        const float rb = fmaf(dB[r][2], 0.0625f, dA[r][2]) - fmaf(1024.f + zb, sa, (64.f + zb) * sb);
        acc[r][0] = fmaf(s.x, ra, acc[r][0]);
        acc[r][2] = fmaf(s.y, rb, acc[r][2]);
    }
}

// The sums of column 0 of the B fragments (token 0: the words bx[p][w] of lanes g = 0) over
// nibbles 0 and 2 (*sa) and 1 and 3 (*sb), in every lane of the warp.
__device__ __forceinline__ void frag_col0_sums(const uint32_t (&bx)[4][4], float *sa, float *sb) {
    float a = 0.f, b = 0.f;
#pragma unroll
    for (int w = 0; w < 4; w++) {
        const float2 x0 = __half22float2(*reinterpret_cast<const __half2 *>(&bx[0][w])),
                     x2 = __half22float2(*reinterpret_cast<const __half2 *>(&bx[2][w])),
                     x1 = __half22float2(*reinterpret_cast<const __half2 *>(&bx[1][w])),
                     x3 = __half22float2(*reinterpret_cast<const __half2 *>(&bx[3][w]));
        a += (x0.x + x0.y) + (x2.x + x2.y);
        b += (x1.x + x1.y) + (x3.x + x3.y);
    }
    // lanes g = 0 hold column 0 (quarters t = 0..3): sum over lanes 0..3, then hand it out
    a += __shfl_xor_sync(0xffffffffu, a, 1), b += __shfl_xor_sync(0xffffffffu, b, 1);
    a += __shfl_xor_sync(0xffffffffu, a, 2), b += __shfl_xor_sync(0xffffffffu, b, 2);
    *sa = __shfl_sync(0xffffffffu, a, 0), *sb = __shfl_sync(0xffffffffu, b, 0);
}

// The activations of a fold (an RMSNorm made by the GEMV's own blocks, qgemv_frag.cu):
// unit u of 8 inputs (4 fragment words of token 0) holds inputs norm_unit_pos(u) + 0..3
// and the same + 64; norm_unit makes its words from x (a, b) and the weights (wa, wb)
// times inv; norm_ss is the unit's share of Σx².
__device__ __forceinline__ int norm_unit_pos(int u) {
    return 128 * (u >> 4) + 32 * ((u & 3) >> 1) + 16 * (u & 1) + 4 * ((u >> 2) & 3);
}

__device__ __forceinline__ uint4 norm_unit(const float4 &a, const float4 &b, const float4 &wa, const float4 &wb, float inv) {
    const __half2 h0 = __floats2half2_rn(wa.x * (a.x * inv), wb.x * (b.x * inv)), h1 = __floats2half2_rn(wa.y * (a.y * inv), wb.y * (b.y * inv));
    const __half2 h2 = __floats2half2_rn(wa.z * (a.z * inv), wb.z * (b.z * inv)), h3 = __floats2half2_rn(wa.w * (a.w * inv), wb.w * (b.w * inv));
    return make_uint4(*reinterpret_cast<const uint32_t *>(&h0), *reinterpret_cast<const uint32_t *>(&h1),
                      *reinterpret_cast<const uint32_t *>(&h2), *reinterpret_cast<const uint32_t *>(&h3));
}

__device__ __forceinline__ float norm_ss(const float4 &a, const float4 &b) {
    return a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
}

}  // namespace frag

#endif
