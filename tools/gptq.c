/* gptq: quantize Llama-family models with GPTQ and run them.  Subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"quantize", cmd_quantize, "quantize a model with GPTQ or RTN into a GPTQ checkpoint"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"perplexity", cmd_perplexity, "perplexity of a model on a text file"},
    {"convert", cmd_convert, "write a model directory as a GGUF file for llama.cpp"},
    {"inspect", cmd_inspect, "describe a model directory or GGUF file"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"bench", cmd_bench, "measure load, prefill and decode speed"},
    {"random-model", cmd_random_model, "write a random-weight checkpoint of a real shape"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: gptq <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'gptq <command> --help' lists a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gptq: unknown command '%s' (run 'gptq --help')\n", argv[1]);
    return 2;
}
