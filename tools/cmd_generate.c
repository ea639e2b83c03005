/* gptq generate: prompt in, continuation out (greedy or sampled), streamed to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "device_cuda.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/llama.h"
#include "model/sampler.h"
#include "text/tokenizer.h"

/* Prints the part of the decoded text not printed yet.  A trailing U+FFFD (an incomplete
 * UTF-8 sequence in byte-level tokens) is held back until the next token completes it. */
static void emit(const tokenizer *tok, const int *ids, int n, size_t *printed) {
    char *text = tokenizer_decode(tok, ids, n);
    if (!text) return;
    size_t len = strlen(text);
    if (len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0) len -= 3;
    if (len > *printed) {
        fwrite(text + *printed, 1, len - *printed, stdout);
        fflush(stdout);
        *printed = len;
    }
    free(text);
}

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *device = "cpu";
    int n_new = 128, top_k = 0, seed = -1, json = 0, dequant = 0;
    float temp = 0.8f, top_p = 1.0f;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STR, &model_dir, 0, -1, "model directory (Hugging Face layout)"},
        {"--prompt", "-p", OPT_STR, &prompt, 0, -1, "prompt text (BOS is prepended as the tokenizer asks)"},
        {"--tokens", "-n", OPT_INT, &n_new, 0, 1 << 20, "new tokens to generate (default 128); stops early at EOS"},
        {"--temp", NULL, OPT_FLOAT, &temp, 0, 100, "temperature (default 0.8; 0 = greedy)"},
        {"--top-k", NULL, OPT_INT, &top_k, 0, 1 << 30, "keep the k most likely tokens (0 = off)"},
        {"--top-p", NULL, OPT_FLOAT, &top_p, 0, 1, "nucleus sampling mass (1 = off)"},
        {"--seed", NULL, OPT_INT, &seed, 0, 2147483647, "random seed (default: from the clock)"},
        {"--dequantize", NULL, OPT_FLAG, &dequant, 0, -1, "GPTQ layers to fp32 at load (reference path) instead of the fused kernels"},
        {"--device", NULL, OPT_STR, &device, 0, -1, "cpu (default) or cuda (the forward pass on the GPU)"},
        {"--json", NULL, OPT_FLAG, &json, 0, -1, "print a JSON summary as the last line"},
        {0},
    };
    cli_command cmd = {"generate", "--model DIR --prompt TEXT [options]", opts, 0, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model_dir) return cli_error(&cmd, "--model is required");
    if (!prompt) return cli_error(&cmd, "--prompt is required");
    const int cuda = strcmp(device, "cuda") == 0;
    if (!cuda && strcmp(device, "cpu") != 0) return cli_error(&cmd, "--device must be cpu or cuda, got '%s'", device);
    if (cuda && dequant) return cli_error(&cmd, "--device cuda does not take --dequantize");
    if (seed < 0) seed = (int)(time(NULL) & 0x7fffffff);

    double t_load = now_seconds();
    llama_model m;
    if (llama_load_ex(&m, model_dir, dequant ? LLAMA_LOAD_DEQUANTIZE : 0) != 0) return cli_fail();
    tokenizer *tok = tokenizer_load(model_dir);
    if (!tok) {
        llama_free(&m);
        return cli_fail();
    }
    t_load = now_seconds() - t_load;
    int *pids = NULL;
    int np = tokenizer_encode(tok, prompt, strlen(prompt), 1, &pids);
    if (np < 0) {
        rc = cli_fail();
        goto out;
    }
    if (np == 0) {
        rc = cli_error(&cmd, "the prompt is empty and the tokenizer adds no BOS: nothing to condition on");
        goto out;
    }
    for (int i = 0; i < np; i++)
        if (pids[i] >= m.cfg.vocab_size) {
            rc = cli_error(&cmd, "token id %d is outside the model's vocabulary (%d)", pids[i], m.cfg.vocab_size);
            goto out;
        }
    int max_seq = np + n_new;
    if (max_seq > m.cfg.max_pos)
        gptq_warn("%d tokens exceed the model's max_position_embeddings (%d)", max_seq, m.cfg.max_pos);

    void *gm = NULL; /* the GPU copy with --device cuda */
    if (cuda && !(gm = generate_cuda_load(model_dir, max_seq, np))) {
        rc = cli_fail();
        goto out;
    }
    llama_state *s = llama_state_new(&m, cuda ? 1 : max_seq, cuda ? 1 : np);
    sampler smp;
    sampler_init(&smp, m.cfg.vocab_size, temp, top_k, top_p, (uint64_t)seed);
    int *ids = xmalloc(sizeof(int) * (max_seq + 1));
    memcpy(ids, pids, sizeof(int) * np);
    int bos = tokenizer_bos(tok);
    int skip = (np > 0 && ids[0] == bos) ? 1 : 0; /* BOS is not printed */
    size_t printed = 0;
    emit(tok, ids + skip, np - skip, &printed);

    double t0 = now_seconds();
    const float *logits = gm ? generate_cuda_forward(gm, ids, np, 0) : llama_forward(&m, s, ids, np, 0, 0);
    double t_prefill = now_seconds() - t0;
    int n = np, generated = 0;
    t0 = now_seconds();
    while (logits && generated < n_new) {
        int next = sampler_sample(&smp, logits);
        if (tokenizer_is_eos(tok, next)) break;
        ids[n++] = next;
        generated++;
        emit(tok, ids + skip, n - skip, &printed);
        if (generated == n_new) break;
        logits = gm ? generate_cuda_forward(gm, &ids[n - 1], 1, n - 1) : llama_forward(&m, s, &ids[n - 1], 1, n - 1, 0);
    }
    double t_decode = now_seconds() - t0;
    printf("\n");
    if (!logits) rc = cli_fail(); /* a GPU step failed */
    fprintf(stderr, "gptq: %d prompt tokens in %.3f s (%.1f tok/s), %d new tokens in %.3f s (%.1f tok/s)\n", np, t_prefill,
            np / (t_prefill > 0 ? t_prefill : 1e-9), generated, t_decode, generated / (t_decode > 0 ? t_decode : 1e-9));
    if (json)
        printf("{\"prompt_tokens\": %d, \"new_tokens\": %d, \"load_s\": %.3f, \"prefill_s\": %.4f, \"decode_s\": %.4f, "
               "\"decode_tok_s\": %.2f, \"seed\": %d}\n",
               np, generated, t_load, t_prefill, t_decode, generated / (t_decode > 0 ? t_decode : 1e-9), seed);
    free(ids);
    sampler_free(&smp);
    llama_state_free(s);
    generate_cuda_free(gm);
out:
    free(pids);
    tokenizer_free(tok);
    llama_free(&m);
    return rc;
}
