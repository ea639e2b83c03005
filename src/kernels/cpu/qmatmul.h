/* Fused dequantizing CPU kernels for GPTQ weights: load-time repacking into the qk layout
 * (kernels/cpu/qtypes.h) and y (T, out) = x (T, in) · Wᵀ straight from the packed codes.
 *
 *   T == 1 (decode): a GEMV that streams each row's packed codes once (4 rows at a time,
 *     sharing the activation loads), accumulating dot(code, x) per group in fp32 and
 *     applying  y = Σ_g s_g·dot_g − Σ_g s_g·z_g·Σx_g  (activation group sums computed once
 *     per call).
 *   T > 1, below the BLAS threshold: a tiled GEMM that unpacks and scales each chunk of
 *     weights once for up to 8 (AVX-512) / 4 (AVX2) tokens, over blocks of 32 rows that
 *     stay in L2 while every token tile passes.
 *   T at or above the BLAS threshold: tiles of rows dequantized to fp32 and multiplied
 *     with OpenBLAS sgemm.  Default threshold (qk_blas_min_t): scalar 2, AVX2 16, AVX-512
 *     never (on the AMD Zen 5 dev box, one thread, its tiled GEMM ran 1.4-1.8x faster than
 *     dequantize + sgemm at every T from 32 to 256, and more below; AVX2 broke even at 16).
 * Paths: scalar, AVX2+FMA+F16C, AVX-512 F/BW/VL/DQ, chosen by cpu_get_features() (cap
 * with GPTQ_CPU=scalar|avx2).  OpenMP over output rows.  Accumulation is fp32; results
 * differ from the exact sum only by fp32 rounding in a different order. */
#ifndef GPTQ_KERNELS_CPU_QMATMUL_H
#define GPTQ_KERNELS_CPU_QMATMUL_H

#include <stdint.h>

#include "kernels/cpu/qtypes.h"
#include "quant/quantizer.h"

/* ---- building a qk layer ---- */

/* From Hugging Face GPTQ checkpoint tensors (quant/pack.h; may be borrowed from a memory
 * map): qweight (in·bits/32, out), qzeros (groups, out·bits/32), scales fp16 (groups, out),
 * g_idx (in).  zero_v2: 0 for checkpoint_format "gptq" (qzeros hold zero − 1), 1 for
 * "gptq_v2" (qzeros hold the zero point).  g_idx may be NULL: then input i is in group
 * i / group_size (group_size <= 0: one group).  -1 + error on bad shapes or g_idx. */
int qk_from_gptq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                 int64_t out, int64_t in, int64_t groups, int bits, int group_size, int zero_v2, qk_layer *L);

/* From a quantized layer as the quantizers return it (codes, real zero points, fp16-exact
 * scales, g_idx).  Any out >= 1; in % 32 == 0.  -1 + error on codes > maxq, zero points
 * outside 0..255 and 1..256, scales that are not fp16 values, or bad g_idx. */
int qk_from_quant(const quant_layer *q, qk_layer *L);

void qk_free(qk_layer *L);

/* Bytes of packed weights, scales and zero points that one GEMV streams. */
int64_t qk_stream_bytes(const qk_layer *L);

/* ---- products ---- */

typedef enum { QK_PATH_AUTO = 0, QK_PATH_SCALAR, QK_PATH_AVX2, QK_PATH_AVX512 } qk_path;

/* The default T at or above which a path dequantizes row tiles and calls sgemm. */
int qk_blas_min_t(qk_path path);

/* y (T, out) = x (T, in) · Wᵀ with the best path for this CPU.  For T == 1 that is the
 * q8 decode GEMV where it applies (qk_q8_supported and qk_decode_q8_enabled), else the
 * exact fp32 kernels. */
void qk_matmul(const qk_layer *L, float *y, const float *x, int T);

/* ---- q8 decode (kernels/cpu/qmatmul_q8.c) ----
 * y (out) = x (in) · Wᵀ with x quantized to int8 per block of 128 inputs (an fp32 scale
 * each) and int32 VNNI dot products: 4- and 8-bit layers whose groups are whole 128-input
 * blocks, on CPUs with AVX-512 VNNI.  |error| <= Σ_i |w_i|·d_b(i)/2 with d_b = max|x| of
 * the block / 127. */
int qk_q8_supported(const qk_layer *L);
void qk_gemv_q8(const qk_layer *L, float *y, const float *x);
/* y[i] = x · L[i]ᵀ for n layers that share their input (q/k/v, gate/up): the activations
 * are quantized once and all rows are split over the threads in one parallel region.
 * Returns 0 (and does nothing) unless every layer is q8-supported with the same input
 * layout; n <= QK_MULTI_MAX. */
#define QK_MULTI_MAX 8
int qk_gemv_q8_multi(const qk_layer *const *L, float *const *y, int n, const float *x);
/* On by default; GPTQ_DECODE=exact in the environment (or qk_set_decode_q8(0)) keeps
 * decode on the exact fp32 kernels. */
int qk_decode_q8_enabled(void);
void qk_set_decode_q8(int on);

/* The same with an explicit path (QK_PATH_AUTO = the best; a path the CPU lacks falls
 * back to the next one down, see qk_path_supported) and BLAS threshold (T >= blas_min_t
 * uses sgemm; 0 = the path's default, INT_MAX = never). */
void qk_matmul_ex(const qk_layer *L, float *y, const float *x, int T, qk_path path, int blas_min_t);
int qk_path_supported(qk_path path);
const char *qk_path_name(qk_path path);

/* Rows [o0, o1) of W in kernel input order as fp32: w (o1 − o0, in_pad); position p holds
 * input perm[p] (padding positions hold finite values that meet zero activations). */
void qk_dequant_rows(const qk_layer *L, int64_t o0, int64_t o1, float *w, qk_path path);

/* The oracle: y (T, out) = x (T, in) · Wᵀ computed straight from the checkpoint tensors
 * (arguments as qk_from_gptq), one weight at a time, w = s·(code − zero) in fp32 and the
 * sum in fp64.  Slow; for tests.  -1 + error on bad shapes. */
int qk_matmul_ref(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                  int64_t out, int64_t in, int64_t groups, int bits, int group_size, int zero_v2, float *y,
                  const float *x, int T);

#endif
