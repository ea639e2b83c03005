/* PCRE2-backed regular expressions with Oniguruma-compatible \s and match iteration
 * (see regex.h). */
#include "text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "text/textbuf.h"
#include "text/utf8.h"

struct tok_regex {
    pcre2_code *code;
};

struct tok_regex_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
};

/* Unicode White_Space, as the body of a character class. */
static const char WS[] =
    "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

/* Rewrites \s and \S (outside classes) and \s (inside classes) to explicit White_Space. */
static char *rewrite_space(const char *p) {
    tok_buf out = {0};
    int in_class = 0;
    size_t n = strlen(p);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            if (e == 'Q') { /* \Q...\E: copy verbatim */
                const char *end = strstr(p + i + 2, "\\E");
                size_t stop = end ? (size_t)(end - p) + 2 : n;
                buf_append(&out, p + i, stop - i);
                i = stop - 1;
                continue;
            }
            if (e == 's' && !in_class) {
                buf_putc(&out, '[');
                buf_append(&out, WS, strlen(WS));
                buf_putc(&out, ']');
            } else if (e == 's') {
                buf_append(&out, WS, strlen(WS));
            } else if (e == 'S' && !in_class) {
                buf_append(&out, "[^", 2);
                buf_append(&out, WS, strlen(WS));
                buf_putc(&out, ']');
            } else {
                buf_append(&out, p + i, 2);
            }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            buf_putc(&out, c);
            if (i + 1 < n && p[i + 1] == '^') buf_putc(&out, p[++i]);
            if (i + 1 < n && p[i + 1] == ']') buf_putc(&out, p[++i]); /* a leading ] is literal */
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* POSIX [:name:] */
            const char *end = strstr(p + i + 2, ":]");
            if (end) {
                size_t stop = (size_t)(end - p) + 2;
                buf_append(&out, p + i, stop - i);
                i = stop - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        buf_putc(&out, c);
    }
    if (!out.p) buf_append(&out, "", 0);
    return out.p;
}

static tok_regex *compile_raw(const char *pat, size_t len, uint32_t options, const char *path, const char *shown) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | options, &err, &off, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        char esc[160];
        gptq_fail("%s: bad regex \"%s\": %s", path, str_escape(shown, esc, sizeof esc), (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if unavailable */
    tok_regex *re = xmalloc(sizeof *re);
    re->code = code;
    return re;
}

tok_regex *regex_compile(const char *pattern, const char *path) {
    char *p = rewrite_space(pattern);
    tok_regex *re = compile_raw(p, strlen(p), PCRE2_UCP, path, pattern);
    free(p);
    return re;
}

tok_regex *regex_literal(const char *s, size_t n, const char *path) {
    return compile_raw(s, n, PCRE2_LITERAL, path, s);
}

void regex_free(tok_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

tok_regex_scratch *regex_scratch_new(void) {
    tok_regex_scratch *s = xmalloc(sizeof *s);
    s->md = pcre2_match_data_create(1, NULL);
    s->mc = pcre2_match_context_create(NULL);
    s->js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!s->md || !s->mc) {
        gptq_warn("PCRE2 could not allocate match data");
        abort();
    }
    if (s->js) pcre2_jit_stack_assign(s->mc, NULL, s->js);
    return s;
}

void regex_scratch_free(tok_regex_scratch *s) {
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mc);
    if (s->js) pcre2_jit_stack_free(s->js);
    free(s);
}

int regex_next(const tok_regex *re, const char *s, size_t n, size_t *pos, size_t *last_end, size_t *ms, size_t *me,
               tok_regex_scratch *sc) {
    for (;;) {
        if (*pos > n) return 0;
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, *pos, 0, sc->md, sc->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, *pos, PCRE2_NO_JIT, sc->md, sc->mc);
        if (rc < 0) return 0; /* no match (or a resource limit: treat the rest as unmatched) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
        size_t a = ov[0], b = ov[1];
        if (a == b && *last_end == b) { /* empty match right after the last one: step one char */
            *pos += *pos < n ? (size_t)utf8_len(s + *pos, n - *pos) : 1;
            continue;
        }
        *pos = b;
        *last_end = b;
        *ms = a;
        *me = b;
        return 1;
    }
}
