/* gptq tokenize: the token ids of a text, as the model's tokenizer makes them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/fs.h"
#include "text/textfile.h"
#include "text/tokenizer.h"

int cmd_tokenize(int argc, char **argv) {
    const char *model_dir = NULL, *text_arg = NULL, *file = NULL;
    int bos = 0, count = 0, pieces = 0;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STR, &model_dir, 0, -1, "model directory (its tokenizer.json)"},
        {"--text", "-t", OPT_STR, &text_arg, 0, -1, "text to tokenize"},
        {"--file", "-f", OPT_STR, &file, 0, -1, "file to tokenize (instead of --text)"},
        {"--bos", NULL, OPT_FLAG, &bos, 0, -1, "prepend BOS as the tokenizer asks"},
        {"--count", NULL, OPT_FLAG, &count, 0, -1, "print only the number of tokens"},
        {"--pieces", NULL, OPT_FLAG, &pieces, 0, -1, "print id and token string per line"},
        {0},
    };
    cli_command cmd = {"tokenize", "--model DIR (--text TEXT | --file FILE) [--bos] [--count]", opts, 0, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model_dir) return cli_error(&cmd, "--model is required");
    if (!text_arg == !file) return cli_error(&cmd, "give exactly one of --text or --file");
    size_t len = 0;
    char *text = file ? text_file_read(file, &len, 0) : NULL;
    if (file && !text) return cli_fail();
    if (!file) len = strlen(text_arg);
    tokenizer *tok = tokenizer_load(model_dir);
    if (!tok) {
        free(text);
        return cli_fail();
    }
    int *ids = NULL;
    int n = tokenizer_encode(tok, file ? text : text_arg, len, bos, &ids);
    if (n < 0) rc = cli_fail();
    else if (count) printf("%d\n", n);
    else if (pieces)
        for (int i = 0; i < n; i++) printf("%d\t%s\n", ids[i], tokenizer_token(tok, ids[i]));
    else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    free(ids);
    free(text);
    tokenizer_free(tok);
    return rc;
}
