/* Device copies of qk layers (cuq.h), the cuBLAS products and CUDA error reporting. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cuda/cuq.h"

int cu_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    return gptq_fail("CUDA: %s: %s", what, cudaGetErrorString(e));
}

int cublas_check(cublasStatus_t st, const char *what) {
    if (st == CUBLAS_STATUS_SUCCESS) return 0;
    return gptq_fail("cuBLAS: %s: %s", what, cublasGetStatusString(st));
}

/* cudaMalloc + copy of n bytes; *dst stays NULL on failure. */
static int upload(void **dst, const void *src, size_t n, const char *what) {
    *dst = NULL;
    if (cu_check(cudaMalloc(dst, n), what)) {
        *dst = NULL;
        return -1;
    }
    return cu_check(cudaMemcpy(*dst, src, n, cudaMemcpyHostToDevice), what);
}

static int tiled_uploads = -1; /* -1: not settled (GPTQ_CUDA_TILED); else a cuq_set_tiled mode */

void cuq_set_tiled(int mode) { tiled_uploads = mode >= 0 && mode <= 2 ? mode : 2; }

/* The codes in the 16-row tile layout (cuq.h): (ceil(out/16), row_blocks, 16 rows) blocks. */
static qk_block *tile_codes(const qk_layer *L, size_t *bytes) {
    const int64_t tiles = (L->out + 15) / 16, rb = L->row_blocks;
    *bytes = sizeof(qk_block) * (size_t)(tiles * 16 * rb);
    qk_block *t = xcalloc((size_t)(tiles * 16 * rb), sizeof(qk_block));
    for (int64_t row = 0; row < L->out; row++)
        for (int64_t b = 0; b < rb; b++) t[((row / 16) * rb + b) * 16 + row % 16] = L->qw[row * rb + b];
    return t;
}

int cuq_upload(const qk_layer *L, cuq_layer *d) {
    memset(d, 0, sizeof *d);
    d->out = L->out, d->in = L->in, d->in_pad = L->in_pad, d->nchunks = L->nchunks;
    d->groups = L->groups, d->row_blocks = L->row_blocks, d->bits = L->bits, d->zero_base = L->zero_base;
    int32_t *cg = xmalloc(sizeof(int32_t) * (size_t)L->nchunks);
    for (int64_t g = 0; g < L->groups; g++)
        for (int32_t c = L->group_chunk[g]; c < L->group_chunk[g + 1]; c++) cg[c] = (int32_t)g;
    d->block_group = L->nchunks % L->chunks_per_block == 0;
    for (int64_t c = 0; c < L->nchunks; c++)
        if (cg[c] != cg[c - c % L->chunks_per_block]) d->block_group = 0;
    if (tiled_uploads < 0) {
        const char *e = getenv("GPTQ_CUDA_TILED");
        tiled_uploads = e && strcmp(e, "0") == 0 ? 0 : e && strcmp(e, "1") == 0 ? 1 : 2;
    }
    /* mode 2: the layers the tensor-core GEMV takes (4-bit, each block in one group) */
    d->tiled = tiled_uploads == 1 || (tiled_uploads == 2 && d->bits == 4 && d->block_group);
    size_t code_bytes = sizeof(qk_block) * (size_t)(L->out * L->row_blocks);
    qk_block *codes = d->tiled ? tile_codes(L, &code_bytes) : L->qw;
    int rc = upload((void **)&d->qw, codes, code_bytes, "uploading codes") ||
             upload((void **)&d->scales, L->scales, sizeof(uint16_t) * (size_t)(L->out * L->groups), "uploading scales") ||
             upload((void **)&d->zeros, L->zeros, (size_t)(L->out * L->groups), "uploading zero points") ||
             upload((void **)&d->chunk_group, cg, sizeof(int32_t) * (size_t)L->nchunks, "uploading groups") ||
             (L->perm && upload((void **)&d->perm, L->perm, sizeof(int32_t) * (size_t)L->in_pad, "uploading act-order"));
    free(cg);
    if (codes != L->qw) free(codes);
    if (rc == 0 && d->tiled && d->bits == 4 && d->block_group) rc = cuq_build_meta(d);
    if (rc) {
        cuq_free(d);
        return -1;
    }
    return 0;
}

void cuq_free(cuq_layer *d) {
    if (!d) return;
    cudaFree(d->qw), cudaFree(d->scales), cudaFree(d->zeros), cudaFree(d->chunk_group), cudaFree(d->perm), cudaFree(d->meta);
    memset(d, 0, sizeof *d);
}

int64_t cuq_stream_bytes(const cuq_layer *d) {
    return d->out * d->row_blocks * (int64_t)sizeof(qk_block) + d->out * d->groups * 3;
}

int cuq_gemm(cublasHandle_t h, const cuq_layer *L, float *y, const float *x, int T, uint16_t *w16, uint16_t *x16,
             cudaStream_t s) {
    if (cuq_dequant_f16(L, w16, s) || cuq_acts_f16(L->perm, L->in, L->in_pad, x16, x, T, s)) return -1;
    const float one = 1.0f, zero = 0.0f;
    /* column-major: y^T (out, T) = W (in_pad, out)^T · x^T (in_pad, T) */
    return cublas_check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)L->out, T, (int)L->in_pad, &one, w16, CUDA_R_16F,
                                     (int)L->in_pad, x16, CUDA_R_16F, (int)L->in_pad, &zero, y, CUDA_R_32F, (int)L->out,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                        "quantized layer GEMM");
}

int cuh_gemm(cublasHandle_t h, const uint16_t *w, int64_t out, int64_t in, float *y, const float *x, int T, uint16_t *x16,
             cudaStream_t s) {
    if (cuk_f32_to_f16(x16, x, in * T, s)) return -1;
    const float one = 1.0f, zero = 0.0f;
    return cublas_check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, T, (int)in, &one, w, CUDA_R_16F, (int)in, x16,
                                     CUDA_R_16F, (int)in, &zero, y, CUDA_R_32F, (int)out, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT),
                        "fp16 GEMM");
}
