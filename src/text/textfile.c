#include "text/textfile.h"

#include <stdlib.h>

#include "core/fs.h"

size_t text_normalize_newlines(char *s, size_t len) {
    size_t w = 0;
    for (size_t r = 0; r < len; r++) {
        if (s[r] == '\r') {
            s[w++] = '\n';
            if (r + 1 < len && s[r + 1] == '\n') r++;
        } else {
            s[w++] = s[r];
        }
    }
    s[w] = 0;
    return w;
}

char *text_file_read(const char *path, size_t *len_out, int raw) {
    size_t len;
    char *s = fs_read_all(path, &len);
    if (!s) return NULL;
    if (!raw) len = text_normalize_newlines(s, len);
    if (len_out) *len_out = len;
    return s;
}
