/* gptq bench --device cuda: the bench command's measurements on the GPU forward pass
 * (model/cuda/llama_cuda.h), with decode speed stated against the bandwidth roofline:
 * bytes read per token (weights, plus the KV cache at the mean decode position) over the
 * device-to-device copy bandwidth measured in the same run. */
#include <stdio.h>
#include <stdlib.h>

#include "device_cuda.h"
#include "cli.h"
#include "core/error.h"
#include "core/fs.h"

#ifdef GPTQ_HAVE_CUDA
#include "model/cuda/llama_cuda.h"
#include "model/cuda/perplexity_cuda.h"

void *generate_cuda_load(const char *model_dir, int max_seq, int max_batch) {
    return llama_cuda_load(model_dir, max_seq, max_batch);
}

const float *generate_cuda_forward(void *m, const int *ids, int n, int pos0) {
    return llama_cuda_forward((llama_cuda *)m, ids, n, pos0, 0);
}

void generate_cuda_free(void *m) { llama_cuda_free((llama_cuda *)m); }

int perplexity_cuda(const char *model_dir, const int *ids, long n, int ctx, int max_windows, void *r) {
    llama_cuda *m = llama_cuda_load(model_dir, ctx, ctx);
    if (!m) return -1;
    int rc = ppl_evaluate_cuda(m, ids, n, ctx, max_windows, (ppl_result *)r);
    llama_cuda_free(m);
    return rc;
}

int bench_cuda(const char *model_dir, int prompt_len, int gen, int reps, int json) {
    double t0 = now_seconds();
    const int total = prompt_len + gen;
    llama_cuda *m = llama_cuda_load(model_dir, total, prompt_len);
    if (!m) return cli_fail();
    const double load_s = now_seconds() - t0;
    const hf_config *c = llama_cuda_config(m);
    int *ids = xmalloc(sizeof(int) * (size_t)total);
    uint64_t r = 88172645463325252ull;
    for (int i = 0; i < total; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[i] = (int)(r % (uint64_t)c->vocab_size);
    }
    const double bw = llama_cuda_copy_bandwidth();
    if (bw <= 0) {
        free(ids);
        llama_cuda_free(m);
        return cli_fail();
    }
    double best_prefill = 1e30, best_decode = 1e30;
    /* one untimed pass first: cuBLAS heuristics, graph capture */
    for (int rep = -1; rep < reps; rep++) {
        t0 = now_seconds();
        if (!llama_cuda_forward(m, ids, prompt_len, 0, 0)) goto fail;
        double p = now_seconds() - t0;
        t0 = now_seconds();
        for (int i = 0; i < gen; i++)
            if (!llama_cuda_forward(m, &ids[prompt_len + i], 1, prompt_len + i, 0)) goto fail;
        double d = now_seconds() - t0;
        if (rep < 0) continue;
        if (p < best_prefill) best_prefill = p;
        if (d < best_decode) best_decode = d;
    }
    /* one more pass, untimed by the clock: the GPU's own time per step (events) */
    double step_gpu_ms = 0;
    if (gen) {
        if (llama_cuda_time_steps(m, 1) || !llama_cuda_forward(m, ids, prompt_len, 0, 0)) goto fail;
        for (int i = 0; i < gen; i++)
            if (!llama_cuda_forward(m, &ids[prompt_len + i], 1, prompt_len + i, 0)) goto fail;
        step_gpu_ms = llama_cuda_step_gpu_ms(m);
        if (llama_cuda_time_steps(m, 0)) goto fail;
    }
    llama_cuda_info info;
    llama_cuda_get_info(m, &info);
    const double prefill_tok_s = prompt_len / best_prefill;
    const double ms_tok = gen ? 1000.0 * best_decode / gen : 0, decode_tok_s = gen ? gen / best_decode : 0;
    const double kv_bytes = info.kv_bytes_per_pos * (prompt_len + 0.5 * gen); /* mean position of a decode step */
    const double bytes = info.weight_bytes + kv_bytes, roof = bw / bytes;
    printf("model:    %s (%.1f M parameters, %d Linear layers packed at %d bits)\n", model_dir, info.n_params / 1e6,
           info.n_quantized, info.bits);
    printf("device:   %s, cuda\n", info.device);
    printf("load:     %.3f s\n", load_s);
    printf("prefill:  %d tokens in %.4f s = %.1f tok/s\n", prompt_len, best_prefill, prefill_tok_s);
    if (gen) {
        printf("decode:   %d tokens in %.4f s = %.3f ms/token, %.2f tok/s (%s GEMV)\n", gen, best_decode, ms_tok, decode_tok_s,
               info.frag_decode ? "fragment-order" : info.n_quantized ? "packed" : "fp16");
        printf("          the GPU's time per step %.3f ms (events around each graph replay, another pass): %.3f ms of\n"
               "          launch and synchronization per token (%.1f%%)\n",
               step_gpu_ms, ms_tok - step_gpu_ms, 100.0 * (ms_tok - step_gpu_ms) / ms_tok);
        printf("roofline: %.1f MiB weights + %.1f MiB KV cache per token, copy bandwidth %.1f GB/s (read + write)\n",
               info.weight_bytes / 1048576, kv_bytes / 1048576, bw * 1e-9);
        printf("          -> %.1f tok/s at the roofline; decode reaches %.1f%% of it\n", roof, 100.0 * decode_tok_s / roof);
    }
    printf("GPU mem:  %.1f MiB peak (weights, KV cache, activations); peak RSS %.1f MiB\n", info.gpu_mem_peak / 1048576,
           peak_rss_mb());
    if (json)
        printf("{\"device\": \"cuda\", \"load_s\": %.4f, \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.3f, "
               "\"decode_ms_per_token\": %.4f, \"peak_rss_mb\": %.1f, \"gpu_mem_peak_mb\": %.1f, \"prompt_len\": %d, "
               "\"gen\": %d, \"weight_bytes\": %.0f, \"kv_bytes_per_token\": %.0f, \"copy_gb_s\": %.2f, "
               "\"roofline_tok_s\": %.2f, \"roofline_frac\": %.4f, \"decode_gpu_ms_per_token\": %.4f, \"decode_gemv\": \"%s\"}\n",
               load_s, prefill_tok_s, decode_tok_s, ms_tok, peak_rss_mb(), info.gpu_mem_peak / 1048576, prompt_len, gen,
               info.weight_bytes, kv_bytes, bw * 1e-9, roof, gen ? decode_tok_s / roof : 0, step_gpu_ms,
               info.frag_decode ? "fragment-order" : info.n_quantized ? "packed" : "fp16");
    free(ids);
    llama_cuda_free(m);
    return 0;
fail:
    free(ids);
    llama_cuda_free(m);
    return cli_fail();
}

#else

#define NO_CUDA "--device cuda: this gptq was built without CUDA (configure with nvcc on the PATH, -DGPTQ_CUDA=ON)"

void *generate_cuda_load(const char *model_dir, int max_seq, int max_batch) {
    (void)model_dir, (void)max_seq, (void)max_batch;
    gptq_fail(NO_CUDA);
    return NULL;
}

const float *generate_cuda_forward(void *m, const int *ids, int n, int pos0) {
    (void)m, (void)ids, (void)n, (void)pos0;
    gptq_fail(NO_CUDA);
    return NULL;
}

void generate_cuda_free(void *m) { (void)m; }

int perplexity_cuda(const char *model_dir, const int *ids, long n, int ctx, int max_windows, void *r) {
    (void)model_dir, (void)ids, (void)n, (void)ctx, (void)max_windows, (void)r;
    return gptq_fail(NO_CUDA);
}

int bench_cuda(const char *model_dir, int prompt_len, int gen, int reps, int json) {
    (void)model_dir, (void)prompt_len, (void)gen, (void)reps, (void)json;
    gptq_fail(NO_CUDA);
    return cli_fail();
}

#endif
