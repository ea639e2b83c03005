/* A .jsonl calibration file: the "text" of each line, joined, then cut into windows by
 * stories260K's tokenizer (from the shared data, when present).  The first 2 bytes choose
 * the number of windows and their length; the rest is the file. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "fuzz.h"
#include "text/calib.h"

static const tokenizer *shared_tokenizer(void) {
    static tokenizer *tok;
    static int tried;
    if (!tried) {
        tried = 1;
        const char *shared = fuzz_shared_dir();
        if (shared) {
            char *dir = fs_join(shared, "models/stories260K");
            tok = tokenizer_load(dir);
            free(dir);
        }
    }
    return tok;
}

int fuzz_calib_jsonl(const uint8_t *data, size_t n) {
    if (n < 2) return 0;
    int windows = 1 + data[0] % 4, seqlen = data[1] % 40; /* seqlen 0, 1: invalid, must be refused */
    char *raw = fuzz_cstr(data + 2, n - 2);
    size_t len = 0;
    char *text = calib_jsonl_text("calib.jsonl", raw, &len);
    free(raw);
    if (!text) {
        FUZZ_ASSERT(gptq_last_error()[0], "failure without a message");
        return 0;
    }
    FUZZ_ASSERT(strlen(text) == len, "length %zu but %zu bytes before the NUL", len, strlen(text));
    const tokenizer *tok = shared_tokenizer();
    if (tok) {
        calib_set c;
        if (calib_from_text(&c, tok, text, len, "calib.jsonl", windows, seqlen, 7) == 0) {
            FUZZ_ASSERT(c.n == windows && c.seqlen == seqlen && seqlen >= 2, "bad window set");
            int nv = tokenizer_vocab_size(tok);
            for (int i = 0; i < c.n * c.seqlen; i++) FUZZ_ASSERT(c.ids[i] >= 0 && c.ids[i] < nv, "id outside vocabulary");
            calib_free(&c);
        } else {
            FUZZ_ASSERT(gptq_last_error()[0], "failure without a message");
        }
    }
    free(text);
    return 0;
}
