/* Command-line parsing shared by the gptq subcommands.
 *
 * Each subcommand describes its options in a table; cli_parse fills the destinations,
 * checks ranges and rejects unknown options with a one-line error.  Every command also
 * takes --threads N and --help. */
#ifndef GPTQ_TOOLS_CLI_H
#define GPTQ_TOOLS_CLI_H

typedef enum { OPT_FLAG, OPT_INT, OPT_FLOAT, OPT_STR } cli_opt_type;

typedef struct {
    const char *name;  /* "--temp" */
    const char *alias; /* "-t" or NULL */
    cli_opt_type type;
    void *dst;         /* int* (FLAG/INT), float* (FLOAT), const char** (STR) */
    double lo, hi;     /* inclusive range for INT/FLOAT (ignored when lo > hi) */
    const char *help;
} cli_opt;

typedef struct {
    const char *name;     /* "generate" */
    const char *synopsis; /* "--model DIR --prompt TEXT [options]" */
    const cli_opt *opts;  /* terminated by {0} */
    int max_positional;
    const char *positional[4];
    int n_positional;
} cli_command;

/* Parses argv (argv[0] is the subcommand name). Returns 0, 1 if --help was printed, or -1
 * after printing an error. Applies --threads. */
int cli_parse(cli_command *cmd, int argc, char **argv);
/* Prints "gptq <cmd>: <message>" to stderr and returns 1 (the exit code). */
int cli_error(const cli_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the library's last error as "gptq: error: ..." and returns 1. */
int cli_fail(void);
/* True if stderr is a terminal (progress lines are drawn only then). */
int cli_progress_enabled(void);

/* Subcommands. */
int cmd_generate(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_random_model(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
/* inspect of a GGUF file (cmd_inspect_gguf.c) */
int inspect_gguf(const char *path, int all, int json);

#endif
