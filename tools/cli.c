#include "cli.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

static int threads_opt = 0;

static void usage(const cli_command *cmd) {
    printf("usage: gptq %s %s\n\noptions:\n", cmd->name, cmd->synopsis);
    for (const cli_opt *o = cmd->opts; o && o->name; o++) {
        char left[64];
        const char *arg = o->type == OPT_INT ? " N" : o->type == OPT_FLOAT ? " X" : o->type == OPT_STR ? " S" : "";
        if (o->alias) snprintf(left, sizeof left, "%s, %s%s", o->alias, o->name, arg);
        else snprintf(left, sizeof left, "%s%s", o->name, arg);
        printf("  %-24s %s\n", left, o->help ? o->help : "");
    }
    printf("  %-24s %s\n", "--threads N", "worker threads (default: all cores)");
}

int cli_error(const cli_command *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gptq %s: ", cmd->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail(void) {
    fprintf(stderr, "gptq: error: %s\n", gptq_last_error());
    return 1;
}

int cli_progress_enabled(void) { return isatty(2); }

static int set_value(cli_command *cmd, const cli_opt *o, const char *val) {
    char *end;
    if (o->type == OPT_STR) {
        *(const char **)o->dst = val;
        return 0;
    }
    errno = 0;
    double v = o->type == OPT_INT ? (double)strtoll(val, &end, 10) : strtod(val, &end);
    if (end == val || *end || errno || !isfinite(v)) {
        cli_error(cmd, "%s expects %s, got '%s'", o->name, o->type == OPT_INT ? "an integer" : "a number", val);
        return -1;
    }
    if (o->lo <= o->hi && (v < o->lo || v > o->hi)) {
        cli_error(cmd, "%s must be between %g and %g, got %s", o->name, o->lo, o->hi, val);
        return -1;
    }
    if (o->type == OPT_INT) *(int *)o->dst = (int)v;
    else *(float *)o->dst = (float)v;
    return 0;
}

int cli_parse(cli_command *cmd, int argc, char **argv) {
    cmd->n_positional = 0;
    static const cli_opt threads = {"--threads", NULL, OPT_INT, &threads_opt, 1, 1024, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(cmd);
            return 1;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (cmd->n_positional >= cmd->max_positional) {
                cli_error(cmd, "unexpected argument '%s'", a);
                return -1;
            }
            cmd->positional[cmd->n_positional++] = a;
            continue;
        }
        /* --name=value is accepted as well as --name value. */
        char name[64];
        const char *eq = strchr(a, '=');
        const char *inline_val = NULL;
        if (eq && a[1] == '-' && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, eq - a);
            name[eq - a] = 0;
            inline_val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        const cli_opt *o = NULL;
        if (strcmp(name, "--threads") == 0) o = &threads;
        for (const cli_opt *p = cmd->opts; !o && p && p->name; p++)
            if (strcmp(name, p->name) == 0 || (p->alias && strcmp(name, p->alias) == 0)) o = p;
        if (!o) {
            cli_error(cmd, "unknown option '%s' (see gptq %s --help)", name, cmd->name);
            return -1;
        }
        if (o->type == OPT_FLAG) {
            if (inline_val) {
                cli_error(cmd, "%s takes no value", o->name);
                return -1;
            }
            *(int *)o->dst = 1;
            continue;
        }
        const char *val = inline_val;
        if (!val) {
            if (i + 1 >= argc) {
                cli_error(cmd, "%s needs a value", o->name);
                return -1;
            }
            val = argv[++i];
        }
        if (set_value(cmd, o, val) != 0) return -1;
    }
    if (threads_opt > 0) omp_set_num_threads(threads_opt);
    return 0;
}
