/* UTF-8 stepping, encoding and lossy repair; Unicode character classes (see utf8.h). */
#include "text/utf8.h"

#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

/* How many continuation bytes follow lead byte c, and the allowed range of the first one. */
static int lead_info(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 1;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 3;
    }
    return -1;
}

/* Number of bytes of the longest valid prefix of a sequence at s (at least 1), and whether
 * that prefix is a complete character. */
static int valid_prefix(const unsigned char *s, size_t n, int *complete) {
    unsigned char lo, hi;
    int need = lead_info(s[0], &lo, &hi);
    *complete = 0;
    if (need < 0) return 1;
    int k = 1;
    for (int i = 0; i < need; i++) {
        if ((size_t)k >= n) return k;
        unsigned char c = s[k];
        if (i == 0 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return k;
        k++;
    }
    *complete = 1;
    return k;
}

int32_t utf8_get(const char *str, size_t n, int *len) {
    const unsigned char *s = (const unsigned char *)str;
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    int complete;
    int k = valid_prefix(s, n, &complete);
    if (!complete) {
        *len = 1;
        return -1;
    }
    *len = k;
    if (k == 2) return ((s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    if (k == 3) return ((s[0] & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return ((s[0] & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

int utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int len;
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        if (utf8_get(s + i, n - i, &len) < 0) return 0;
        i += (size_t)len;
    }
    return 1;
}

void utf8_lossy_append(tok_buf *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int complete;
        int k = valid_prefix(s + i, n - i, &complete);
        if (complete) {
            i += (size_t)k;
            continue;
        }
        buf_append(out, s + run, i - run);
        buf_append(out, "\xEF\xBF\xBD", 3);
        i += (size_t)k;
        run = i;
    }
    buf_append(out, s + run, n - run);
}

int uc_is_whitespace(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int uc_is_numeric(int32_t c) {
    if (c < 0) return 0;
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

int uc_is_alnum(int32_t c) {
    if (c < 0) return 0;
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

int uc_is_word(int32_t c) {
    if (c < 0) return 0;
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (c == 0x200C || c == 0x200D) return 1;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

const char *str_escape(const char *s, char *out, size_t cap) {
    size_t k = 0;
    for (; *s && k + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n')
            k += (size_t)snprintf(out + k, cap - k, "\\n");
        else if (c == '\r')
            k += (size_t)snprintf(out + k, cap - k, "\\r");
        else if (c == '\t')
            k += (size_t)snprintf(out + k, cap - k, "\\t");
        else if (c < 0x20 || c == 0x7F)
            k += (size_t)snprintf(out + k, cap - k, "\\x%02x", c);
        else
            out[k++] = (char)c;
    }
    if (*s && k + 4 <= cap) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = 0;
    return out;
}
