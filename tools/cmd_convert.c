/* gptq convert: a Hugging Face model directory as a GGUF file for llama.cpp. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/gguf.h"
#include "io/gguf_export.h"

int cmd_convert(int argc, char **argv) {
    const char *model_dir = NULL, *out = NULL, *to = NULL, *types_from = NULL;
    int force = 0, json = 0;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STR, &model_dir, 0, -1, "model directory (Hugging Face layout)"},
        {"--out", "-o", OPT_STR, &out, 0, -1, "output .gguf file"},
        {"--to", NULL, OPT_STR, &to, 0, -1,
         "gguf-f32, gguf-f16, gguf-bf16, or gguf-TYPE with TYPE q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k "
         "(plain round-to-nearest, byte-identical to llama-quantize without an imatrix; use quantize --format gguf for GPTQ)"},
        {"--types-from", NULL, OPT_STR, &types_from, 0, -1, "take each weight's type from the same tensor of this GGUF file"},
        {"--force", NULL, OPT_FLAG, &force, 0, -1, "replace an existing output file"},
        {"--json", NULL, OPT_FLAG, &json, 0, -1, "print a JSON summary as the last line"},
        {0},
    };
    cli_command cmd = {"convert", "--model DIR --out FILE --to gguf-f16|gguf-f32|gguf-TYPE", opts, 0, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model_dir) return cli_error(&cmd, "--model is required");
    if (!out) return cli_error(&cmd, "--out is required");
    if (!to) return cli_error(&cmd, "--to is required (gguf-f16 or gguf-f32)");
    int type = strncmp(to, "gguf-", 5) == 0 ? ggml_type_parse(to + 5) : -1;
    if (type < 0) return cli_error(&cmd, "--to must be gguf-f32, gguf-f16, gguf-bf16 or gguf-<block type>, got '%s'", to);
    if (fs_exists(out) && !force) return cli_error(&cmd, "%s already exists (pass --force to replace it)", out);
    double t0 = now_seconds();
    gguf_file tf;
    if (types_from && gguf_open(&tf, types_from)) return cli_fail();
    gguf_export_opts o = {.type = (ggml_type)type, .types_from = types_from ? &tf : NULL};
    rc = gguf_export_model(model_dir, out, &o);
    if (types_from) gguf_close(&tf);
    if (rc) return cli_fail();
    double secs = now_seconds() - t0;
    printf("wrote %s (%s) in %.2f s\n", out, to, secs);
    if (json) printf("{\"out\": \"%s\", \"type\": \"%s\", \"seconds\": %.3f}\n", out, to + 5, secs);
    return 0;
}
