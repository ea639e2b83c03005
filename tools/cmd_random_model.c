/* gptq random-model: a random-weight checkpoint of a real shape (Llama-2-7B, Llama-3-8B,
 * TinyLlama-1.1B or any config.json) with a working byte-level BPE tokenizer, so that
 * speed and memory can be measured at real sizes without downloading anything. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/random_model.h"

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig) {
    (void)sig;
    cancel_flag = 1;
}

int cmd_random_model(int argc, char **argv) {
    const char *shape = NULL, *out = NULL, *dtype_s = NULL;
    int seed = 0, layers = 0, vocab = 0, force = 0;
    float shard_mb = 5000;
    const cli_opt opts[] = {
        {"--shape", NULL, OPT_STR, &shape, 0, -1, "llama2-7b | llama3-8b | tinyllama-1.1b | CONFIG.json | MODEL_DIR"},
        {"--out", "-o", OPT_STR, &out, 0, -1, "output model directory (must not exist, unless --force)"},
        {"--dtype", NULL, OPT_STR, &dtype_s, 0, -1, "f16 | bf16 | f32 (default: the shape's own; f16 for configs without one)"},
        {"--seed", NULL, OPT_INT, &seed, 0, 2147483647, "random seed (default 0)"},
        {"--layers", NULL, OPT_INT, &layers, 1, 100000, "override num_hidden_layers"},
        {"--vocab", NULL, OPT_INT, &vocab, 1, 100000000, "override vocab_size"},
        {"--shard-mb", NULL, OPT_FLOAT, &shard_mb, 0.001, 1e9, "largest shard in MB (default 5000, as transformers)"},
        {"--force", NULL, OPT_FLAG, &force, 0, -1, "replace the output directory if it exists"},
        {0},
    };
    cli_command cmd = {"random-model", "--shape NAME|CONFIG.json --out DIR [options]", opts, 0, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (!shape) return cli_error(&cmd, "--shape is required (%s, or a config.json)", random_model_shape_names());
    if (!out || !*out) return cli_error(&cmd, "--out DIR is required");

    hf_config c;
    gptq_dtype dt = DT_F16;
    if (random_model_shape(shape, &c, &dt) != 0) {
        char *cfg_path = NULL;
        if (fs_is_dir(shape)) cfg_path = fs_join(shape, "config.json");
        else if (fs_exists(shape)) cfg_path = xstrdup(shape);
        if (!cfg_path)
            return cli_error(&cmd, "unknown shape '%s' (known: %s, or a path to a config.json)", shape,
                             random_model_shape_names());
        int lrc = hf_config_load(&c, cfg_path);
        free(cfg_path);
        if (lrc != 0) return cli_fail();
        dt = c.dtype == DT_BF16 ? DT_BF16 : DT_F16;
    }
    if (dtype_s) {
        if (strcmp(dtype_s, "f16") == 0 || strcmp(dtype_s, "float16") == 0 || strcmp(dtype_s, "fp16") == 0) dt = DT_F16;
        else if (strcmp(dtype_s, "bf16") == 0 || strcmp(dtype_s, "bfloat16") == 0) dt = DT_BF16;
        else if (strcmp(dtype_s, "f32") == 0 || strcmp(dtype_s, "float32") == 0 || strcmp(dtype_s, "fp32") == 0) dt = DT_F32;
        else return cli_error(&cmd, "--dtype must be f16, bf16 or f32, got '%s'", dtype_s);
    }
    if (random_model_override(&c, layers, vocab) != 0) return cli_fail();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    random_model_opts o = {
        .dtype = dt, .seed = (uint64_t)seed, .max_shard_bytes = shard_mb * 1e6, .force = force, .cancel = &cancel_flag,
        .progress = cli_progress_enabled(),
    };
    random_model_info info;
    double t0 = now_seconds();
    if (random_model_write(&c, &o, out, &info) != 0) {
        cli_fail();
        return cancel_flag ? 130 : 1;
    }
    double el = now_seconds() - t0;
    char params[32];
    if (info.n_params >= 1000000000) snprintf(params, sizeof params, "%.2f B", info.n_params / 1e9);
    else snprintf(params, sizeof params, "%.2f M", info.n_params / 1e6);
    printf("wrote %s: %d layers, hidden %d, vocab %d, %s parameters, %s, %.3f GB in %d file%s, %.1f s (%.0f MB/s), "
           "peak RSS %.0f MiB\n",
           out, c.n_layers, c.dim, c.vocab_size, params, dtype_name(dt), info.total_bytes / 1e9,
           info.n_shards, info.n_shards == 1 ? "" : "s", el, el > 0 ? info.total_bytes / 1e6 / el : 0, peak_rss_mb());
    return 0;
}
