#include "text/calib.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "text/textfile.h"

uint64_t calib_rand(uint64_t *s, uint64_t bound) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return ((*s * 0x2545F4914F6CDD1Dull) >> 11) % bound;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

char *calib_jsonl_text(const char *path, const char *raw, size_t *len_out) {
    size_t cap = strlen(raw) + 1, len = 0;
    char *out = xmalloc(cap);
    int line_no = 0;
    const char *p = raw;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        line_no++;
        /* skip blank lines */
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k < n) {
            cJSON *j = cJSON_ParseWithLength(p, n);
            const cJSON *t = j ? cJSON_GetObjectItemCaseSensitive(j, "text") : NULL;
            if (!cJSON_IsString(t)) {
                cJSON_Delete(j);
                free(out);
                gptq_fail("%s: line %d is not a JSON object with a \"text\" string", path, line_no);
                return NULL;
            }
            size_t tl = strlen(t->valuestring);
            if (len + tl + 3 > cap) out = xrealloc(out, cap = 2 * (len + tl + 3));
            if (len) memcpy(out + len, "\n\n", 2), len += 2;
            memcpy(out + len, t->valuestring, tl);
            len += tl;
            cJSON_Delete(j);
        }
        p += n + (e ? 1 : 0);
    }
    out[len] = 0;
    *len_out = len;
    return out;
}

int calib_from_text(calib_set *c, const tokenizer *tok, const char *text, size_t len, const char *what, int n, int seqlen,
                    uint64_t seed) {
    memset(c, 0, sizeof *c);
    if (n < 1 || seqlen < 2) return gptq_fail("%s: need at least one calibration window of 2 or more tokens", what);
    int *ids = NULL;
    int nt = tokenizer_encode(tok, text, len, 0, &ids);
    if (nt < 0) return gptq_fail_context("%s", what);
    if (nt == 0) {
        free(ids);
        return gptq_fail("%s: empty calibration text", what);
    }
    if (nt <= seqlen) {
        free(ids);
        return gptq_fail("%s: %d tokens, not enough for a calibration window of %d", what, nt, seqlen);
    }
    c->n = n;
    c->seqlen = seqlen;
    c->ids = xmalloc(sizeof(int) * (size_t)n * seqlen);
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (!st) st = 1;
    for (int i = 0; i < n; i++) {
        uint64_t off = calib_rand(&st, (uint64_t)(nt - seqlen));
        memcpy(c->ids + (size_t)i * seqlen, ids + off, sizeof(int) * seqlen);
    }
    free(ids);
    return 0;
}

int calib_from_file(calib_set *c, const tokenizer *tok, const char *path, int n, int seqlen, uint64_t seed) {
    size_t len;
    char *raw = text_file_read(path, &len, 0);
    if (!raw) return -1;
    if (ends_with(path, ".jsonl")) {
        char *t = calib_jsonl_text(path, raw, &len);
        free(raw);
        if (!t) return -1;
        raw = t;
    }
    int rc = calib_from_text(c, tok, raw, len, path, n, seqlen, seed);
    free(raw);
    return rc;
}

void calib_free(calib_set *c) {
    free(c->ids);
    memset(c, 0, sizeof *c);
}
