/* The Llama-family forward pass on a CUDA GPU: weights, KV cache and activations in GPU
 * memory.  GPTQ-quantized Linear layers stay packed (the qk layout of kernels/cpu/qtypes.h,
 * read by the fused GEMV of kernels/cuda/cuq.h); other weights are held in fp16.
 * Calls with n <= 8 tokens use the GEMV kernels, larger n cuBLAS GEMMs; a single-token step
 * that returns the last logits is captured in a CUDA graph once and replayed.
 * Plain C interface; the struct is opaque so C callers need no CUDA headers.  Exists only in
 * CUDA builds (GPTQ_HAVE_CUDA). */
#ifndef GPTQ_MODEL_CUDA_LLAMA_CUDA_H
#define GPTQ_MODEL_CUDA_LLAMA_CUDA_H

#include <stdint.h>

#include "io/hf_config.h"

typedef struct llama_cuda llama_cuda;

/* Loads the model in DIR (config.json + safetensors, float or GPTQ) onto GPU 0, with a KV
 * cache of max_seq positions and room for max_batch tokens per call.  NULL + error. */
llama_cuda *llama_cuda_load(const char *dir, int max_seq, int max_batch);
void llama_cuda_free(llama_cuda *m);
const hf_config *llama_cuda_config(const llama_cuda *m);

/* Runs tokens ids (n <= max_batch) at positions pos0..pos0+n-1 (pos0 + n <= max_seq),
 * appending to the KV cache.  Returns host logits: of the last token (vocab), or of all n
 * (n, vocab) when all_logits.  NULL + error on a CUDA failure. */
const float *llama_cuda_forward(llama_cuda *m, const int *ids, int n, int pos0, int all_logits);

/* on: events are recorded around each decode step's graph replay (llama_cuda_forward with
 * one token, last logits); llama_cuda_step_gpu_ms is then their mean time since the call,
 * the step as the GPU saw it (its input and logits copies included), without the host's
 * launch and synchronization.  0 / -1 + error. */
int llama_cuda_time_steps(llama_cuda *m, int on);
double llama_cuda_step_gpu_ms(const llama_cuda *m);

/* What the device holds and reads. */
typedef struct {
    char device[256];       /* GPU name */
    int64_t n_params;       /* parameters of the checkpoint */
    int n_quantized;        /* Linear layers kept packed */
    int bits;               /* their bit width (0 if none) */
    double weight_bytes;    /* bytes one decode step reads from weights (packed layers, fp16 layers, lm_head) */
    double kv_bytes_per_pos;/* KV cache bytes per position, all layers (read once per step per position) */
    double gpu_mem_peak;    /* bytes of GPU memory in use after loading and the largest call so far */
    int frag_decode;        /* decode calls run every Linear through the fragment-order GEMV (cuq.h) */
    int attn_o_decode;      /* one-token decode calls fuse attention + o_proj + residual add (model_kernels.h) */
    int fold_decode;        /* ... and fold the RMSNorms into the GEMVs (cuq_gemv_frag_ex) */
    int prenorm_decode;     /* ... or defer the attention norm into down_proj and q/k/v (cuq_frag_opts) */
} llama_cuda_info;
void llama_cuda_get_info(llama_cuda *m, llama_cuda_info *info);

/* Device-to-device copy bandwidth (bytes read + written per second) of a 1 GiB copy, the
 * better of cudaMemcpy and a copy kernel, median of 10; -1 + error on failure. */
double llama_cuda_copy_bandwidth(void);

#endif
