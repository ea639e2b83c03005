/* gptq perplexity: GPTQ-protocol perplexity of a model on a text file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_cuda.h"
#include "cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "text/textfile.h"
#include "text/tokenizer.h"

int cmd_perplexity(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *compare = NULL, *device = "cpu", *protocol = "gptq";
    int ctx = 512, max_windows = 0, json = 0, raw = 0, dequant = 0;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STR, &model_dir, 0, -1, "model directory"},
        {"--data", "-f", OPT_STR, &data, 0, -1, "text file to evaluate (UTF-8, read as is)"},
        {"--ctx", "-c", OPT_INT, &ctx, 2, 1 << 20, "window length in tokens (default 512)"},
        {"--max-windows", NULL, OPT_INT, &max_windows, 0, 1 << 30, "evaluate only the first N windows (0 = all)"},
        {"--compare", NULL, OPT_STR, &compare, 0, -1, "also the KL divergence and top-1 agreement against this (original) model"},
        {"--raw-bytes", NULL, OPT_FLAG, &raw, 0, -1, "keep CRLF line endings (default: read as text, CRLF -> LF)"},
        {"--protocol", NULL, OPT_STR, &protocol, 0, -1,
         "gptq (default) or llama.cpp: as llama-perplexity (raw bytes, BOS first, each window's second half scored)"},
        {"--dequantize", NULL, OPT_FLAG, &dequant, 0, -1, "GPTQ layers to fp32 at load (reference path) instead of the fused kernels"},
        {"--device", NULL, OPT_STR, &device, 0, -1, "cpu (default) or cuda (the forward pass on the GPU)"},
        {"--json", NULL, OPT_FLAG, &json, 0, -1, "print a JSON summary as the last line"},
        {0},
    };
    cli_command cmd = {"perplexity", "--model DIR --data FILE [--ctx 512] [--max-windows N] [--json]", opts, 0, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model_dir) return cli_error(&cmd, "--model is required");
    if (!data) return cli_error(&cmd, "--data is required");
    int lcpp = strcmp(protocol, "llama.cpp") == 0;
    if (!lcpp && strcmp(protocol, "gptq") != 0) return cli_error(&cmd, "--protocol must be gptq or llama.cpp, got '%s'", protocol);
    if (lcpp && compare) return cli_error(&cmd, "--compare works with the gptq protocol only");
    if (lcpp) raw = 1; /* llama-perplexity reads the file's bytes as they are */
    const int cuda = strcmp(device, "cuda") == 0;
    if (!cuda && strcmp(device, "cpu") != 0) return cli_error(&cmd, "--device must be cpu or cuda, got '%s'", device);
    if (cuda && (compare || dequant)) return cli_error(&cmd, "--device cuda does not take --compare or --dequantize yet");
    if (cuda && lcpp) return cli_error(&cmd, "--protocol llama.cpp runs on the CPU only");

    size_t len;
    char *text = text_file_read(data, &len, raw);
    if (!text) return cli_fail();
    llama_model m;
    if (llama_load_ex(&m, model_dir, dequant ? LLAMA_LOAD_DEQUANTIZE : 0) != 0) {
        free(text);
        return cli_fail();
    }
    tokenizer *tok = tokenizer_load(model_dir);
    int *ids = NULL;
    if (!tok) {
        rc = cli_fail();
        goto out;
    }
    if (ctx > m.cfg.max_pos) gptq_warn("--ctx %d exceeds the model's max_position_embeddings (%d)", ctx, m.cfg.max_pos);
    double t0 = now_seconds();
    int n = tokenizer_encode(tok, text, len, lcpp, &ids);
    if (n < 0) {
        rc = cli_fail();
        goto out;
    }
    double t_tok = now_seconds() - t0;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m.cfg.vocab_size) {
            rc = cli_error(&cmd, "%s: token id %d is outside the model's vocabulary (%d)", data, ids[i], m.cfg.vocab_size);
            goto out;
        }
    if (!lcpp && n < ctx) {
        rc = cli_error(&cmd, "%s: %d tokens, fewer than one window of %d", data, n, ctx);
        goto out;
    }
    ppl_result r;
    if (compare) {
        llama_model ref;
        if (llama_load(&ref, compare) != 0) {
            rc = cli_fail();
            goto out;
        }
        int crc = ppl_compare(&m, &ref, ids, n, ctx, max_windows, &r);
        llama_free(&ref);
        if (crc != 0) {
            rc = cli_fail();
            goto out;
        }
        printf("compared with %s: its perplexity %.4f, mean KL divergence %.6f nats/token, top-1 agreement %.2f%%\n",
               compare, r.ref_ppl, r.kl_mean, 100 * r.top1);
    } else if (lcpp ? ppl_evaluate_llamacpp(&m, ids, n, ctx, tokenizer_bos(tok), max_windows, &r) != 0
               : cuda ? perplexity_cuda(model_dir, ids, n, ctx, max_windows, &r) != 0
                    : ppl_evaluate(&m, ids, n, ctx, max_windows, NULL, &r) != 0) {
        rc = cli_fail();
        goto out;
    }
    printf("perplexity%s: %.4f  (%d windows x %d tokens, %ld tokens in the text, tokenized in %.2f s, evaluated in %.1f s, "
           "%.0f tok/s)\n",
           lcpp ? " (llama.cpp protocol)" : "", r.ppl, r.windows, ctx, r.tokens, t_tok, r.seconds,
           r.windows * (double)ctx / r.seconds);
    if (json) {
        printf("{\"ppl\": %.6f, \"tokens\": %ld, \"windows\": %d, \"ctx\": %d, \"seconds\": %.3f", r.ppl, r.tokens,
               r.windows, r.ctx, r.seconds);
        if (compare) printf(", \"ref_ppl\": %.6f, \"kl\": %.8f, \"top1\": %.6f", r.ref_ppl, r.kl_mean, r.top1);
        printf("}\n");
    }
out:
    free(ids);
    tokenizer_free(tok);
    llama_free(&m);
    free(text);
    return rc;
}
