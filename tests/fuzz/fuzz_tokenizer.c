/* tokenizer.json (+ tokenizer_config.json), then encoding and decoding a text with it.
 * Input: tokenizer.json \0 tokenizer_config.json \0 text (the last two parts optional; an
 * empty tokenizer_config part means none). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fuzz.h"
#include "text/tokenizer.h"

static void exercise(const tokenizer *t, const char *text, size_t len) {
    int nv = tokenizer_vocab_size(t);
    /* (the model's own count may exceed the id range: tokens may share an id, as in `tokenizers`) */
    FUZZ_ASSERT(nv >= 0 && tokenizer_model_vocab_size(t) >= 0, "vocabulary sizes %d / %d", nv, tokenizer_model_vocab_size(t));
    FUZZ_ASSERT(tokenizer_bos(t) >= -1, "bos %d", tokenizer_bos(t));
    for (int add_bos = 0; add_bos < 2; add_bos++) {
        int *ids = NULL;
        int n = tokenizer_encode(t, text, len, add_bos, &ids);
        if (n < 0) {
            FUZZ_ASSERT(gptq_last_error()[0], "encode failure without a message");
            free(ids);
            continue;
        }
        for (int i = 0; i < n; i++) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < nv, "id %d outside 0..%d", ids[i], nv - 1);
        size_t dlen;
        char *back = tokenizer_decode_n(t, ids, n, &dlen);
        FUZZ_ASSERT(back != NULL, "decode of encoded ids failed: %s", gptq_last_error());
        free(back);
        free(ids);
    }
    /* decoding arbitrary ids: an id with a vocabulary string decodes, any other is an error */
    int probe[4] = {0, nv - 1, nv, -1};
    for (int i = 0; i < 4; i++) {
        char *s = tokenizer_decode(t, &probe[i], 1);
        if (tokenizer_token(t, probe[i])) FUZZ_ASSERT(s != NULL, "decode of id %d failed: %s", probe[i], gptq_last_error());
        else FUZZ_ASSERT(s == NULL, "decode of invalid id %d succeeded", probe[i]);
        free(s);
    }
}

int fuzz_tokenizer(const uint8_t *data, size_t n) {
    const uint8_t *rest, *text;
    size_t json_len, rest_len, tcfg_len, text_len;
    fuzz_split(data, n, &rest, &json_len, &rest_len);
    fuzz_split(rest, rest_len, &text, &tcfg_len, &text_len);
    for (int raw = 0; raw < 2; raw++) {
        tokenizer *t = tokenizer_from_json((const char *)data, json_len, tcfg_len ? (const char *)rest : NULL, tcfg_len,
                                           "tokenizer.json", raw ? TOKENIZER_LOAD_RAW : 0);
        if (!t) {
            FUZZ_ASSERT(gptq_last_error()[0], "failure without a message");
            return 0;
        }
        exercise(t, (const char *)text, text_len);
        tokenizer_free(t);
        if (!tcfg_len) break; /* without a tokenizer_config the two modes are the same */
    }
    return 0;
}
