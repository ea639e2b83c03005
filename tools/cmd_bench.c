/* gptq bench: load time, prefill throughput, decode latency and peak memory of a model,
 * on random token ids (the speed of a forward pass does not depend on which tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_cuda.h"
#include "cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/membw.h"
#include "model/llama.h"
#include <math.h>
#include <omp.h>

int cmd_bench(int argc, char **argv) {
    const char *model_dir = NULL, *device = "cpu";
    int prompt_len = 512, gen = 128, json = 0, reps = 1, membw = 0, dequant = 0, membw_mib = 1024;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STR, &model_dir, 0, -1, "model directory"},
        {"--prompt-len", NULL, OPT_INT, &prompt_len, 1, 1 << 20, "prompt tokens to prefill (default 512)"},
        {"--gen", NULL, OPT_INT, &gen, 0, 1 << 20, "tokens to decode after the prompt (default 128)"},
        {"--reps", NULL, OPT_INT, &reps, 1, 100, "repeat prefill+decode and keep the best (default 1)"},
        {"--membw", NULL, OPT_FLAG, &membw, 0, -1, "probe the memory read bandwidth first (alone when no --model)"},
        {"--membw-mib", NULL, OPT_INT, &membw_mib, 1, 1 << 20, "buffer size of the bandwidth probe (default 1024 MiB)"},
        {"--dequantize", NULL, OPT_FLAG, &dequant, 0, -1, "GPTQ layers to fp32 at load (reference path) instead of the fused kernels"},
        {"--device", NULL, OPT_STR, &device, 0, -1, "cpu (default) or cuda"},
        {"--json", NULL, OPT_FLAG, &json, 0, -1, "print a JSON summary as the last line"},
        {0},
    };
    cli_command cmd = {"bench", "--model DIR [--prompt-len 512] [--gen 128] [--membw] [--json]  |  --membw", opts, 0, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model_dir && !membw) return cli_error(&cmd, "--model is required (or --membw alone)");
    if (strcmp(device, "cuda") == 0) {
        if (!model_dir) return cli_error(&cmd, "--device cuda needs --model");
        return bench_cuda(model_dir, prompt_len, gen, reps, json);
    }
    if (strcmp(device, "cpu") != 0) return cli_error(&cmd, "--device must be cpu or cuda, got '%s'", device);

    double bw = 0;
    const size_t probe_bytes = (size_t)membw_mib << 20;
    if (membw && !model_dir) {
        bw = membw_read_gbs(probe_bytes, 10);
        printf("membw:    %.2f GB/s read (%d MiB buffer, %d threads)\n", bw, membw_mib, omp_get_max_threads());
        if (json) printf("{\"membw_gb_s\": %.3f, \"threads\": %d}\n", bw, omp_get_max_threads());
        return 0;
    }
    double t0 = now_seconds();
    llama_model m;
    if (llama_load_ex(&m, model_dir, dequant ? LLAMA_LOAD_DEQUANTIZE : 0) != 0) return cli_fail();
    double load_s = now_seconds() - t0;
    int total = prompt_len + gen;
    int *ids = xmalloc(sizeof(int) * total);
    uint64_t r = 88172645463325252ull;
    for (int i = 0; i < total; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[i] = (int)(r % (uint64_t)m.cfg.vocab_size);
    }
    llama_state *s = llama_state_new(&m, total, prompt_len);
    /* With --membw the bandwidth is probed right before and right after every rep: a
     * shared machine's bandwidth drifts by tens of percent within a minute, so the decode
     * is compared with the probes around it, the higher of the two (the conservative side). */
    double best_prefill = 1e30, best_decode = 1e30, bw_min = 1e30, bw_max = 0;
    /* The probes' buffer is freed after each probe; peak RSS should be the model's, so the
     * mark is saved before a probe and lowered again after it. */
    double rss_keep = 0;
    int rss_clean = 1;
    for (int rep = 0; rep < reps; rep++) {
        rss_keep = fmax(rss_keep, peak_rss_mb());
        const double bw0 = membw ? membw_read_gbs(probe_bytes, 5) : 0;
        if (membw && peak_rss_reset() != 0) rss_clean = 0;
        t0 = now_seconds();
        llama_forward(&m, s, ids, prompt_len, 0, 0);
        double p = now_seconds() - t0;
        t0 = now_seconds();
        for (int i = 0; i < gen; i++) llama_forward(&m, s, &ids[prompt_len + i], 1, prompt_len + i, 0);
        double d = now_seconds() - t0;
        rss_keep = fmax(rss_keep, peak_rss_mb());
        const double bw1 = membw ? membw_read_gbs(probe_bytes, 5) : 0, bwr = bw0 > bw1 ? bw0 : bw1;
        if (membw && peak_rss_reset() != 0) rss_clean = 0;
        if (membw) {
            bw_min = fmin(bw_min, fmin(bw0, bw1)), bw_max = fmax(bw_max, bwr);
            printf("rep %d:    probe %.2f GB/s, decode %.2f ms/token, probe %.2f GB/s\n", rep + 1,
                   bw0, gen ? 1000.0 * d / gen : 0, bw1);
        }
        if (p < best_prefill) best_prefill = p;
        if (d < best_decode) best_decode = d, bw = bwr;
    }
    double prefill_tok_s = prompt_len / best_prefill;
    double ms_tok = gen ? 1000.0 * best_decode / gen : 0, decode_tok_s = gen ? gen / best_decode : 0;
    /* Weights streamed per decode step (KV cache and activations are small beside them). */
    const double wbytes = (double)llama_weight_bytes(&m), dec_gbs = gen ? wbytes / (best_decode / gen) / 1e9 : 0;
    printf("model:    %s (%.1f M parameters, %.1f MiB of weights per token)\n", model_dir, m.n_params / 1e6,
           wbytes / 1048576.0);
    printf("threads:  %d, cpu path %s\n", omp_get_max_threads(), cpu_path_name());
    printf("load:     %.3f s\n", load_s);
    printf("prefill:  %d tokens in %.3f s = %.1f tok/s\n", prompt_len, best_prefill, prefill_tok_s);
    if (gen) printf("decode:   %d tokens in %.3f s = %.2f ms/token, %.2f tok/s, weights at %.2f GB/s\n", gen, best_decode,
                    ms_tok, decode_tok_s, dec_gbs);
    if (gen && bw > 0)
        printf("          = %.1f%% of the bandwidth probed around that rep (%.2f GB/s; all probes %.2f-%.2f GB/s, %d MiB)\n",
               100.0 * dec_gbs / bw, bw, bw_min, bw_max, membw_mib);
    const double peak_mb = fmax(rss_keep, peak_rss_mb());
    printf("peak RSS: %.1f MiB%s\n", peak_mb, rss_clean ? "" : " (includes the bandwidth probe's buffer)");
    if (json)
        printf("{\"load_s\": %.4f, \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.3f, \"decode_ms_per_token\": %.3f, "
               "\"peak_rss_mb\": %.1f, \"threads\": %d, \"prompt_len\": %d, \"gen\": %d, \"weight_bytes\": %.0f, "
               "\"decode_weight_gb_s\": %.3f, \"membw_gb_s\": %.3f, \"membw_fraction\": %.4f}\n",
               load_s, prefill_tok_s, decode_tok_s, ms_tok, peak_mb, omp_get_max_threads(), prompt_len, gen, wbytes,
               dec_gbs, bw, bw > 0 && gen ? dec_gbs / bw : 0.0);
    llama_state_free(s);
    free(ids);
    llama_free(&m);
    return 0;
}
