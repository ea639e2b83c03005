/* Calibration windows: text and .jsonl sources, seeded offsets, model-written windows,
 * and errors that name the file. */
#include <cjson/cJSON.h>

#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/llama.h"
#include "quant/calib_auto.h"
#include "text/calib.h"
#include "text/textfile.h"
#include "text/tokenizer.h"

static int same_set(const calib_set *a, const calib_set *b) {
    return a->n == b->n && a->seqlen == b->seqlen && memcmp(a->ids, b->ids, sizeof(int) * a->n * a->seqlen) == 0;
}

int main(void) {
    const char *dir = check_shared("models/stories260K");
    const char *cal = check_shared("data/calib/calib_mix.txt");
    const char *tmp = check_tmpdir("calib");
    tokenizer *tok = tokenizer_load(dir);
    CHECK(tok != NULL, "tokenizer: %s", gptq_last_error());
    if (!tok) return check_done();

    /* windows are slices of the tokenized text, at seeded offsets */
    calib_set a, b, c;
    CHECK(calib_from_file(&a, tok, cal, 8, 64, 1) == 0, "calib: %s", gptq_last_error());
    CHECK(calib_from_file(&b, tok, cal, 8, 64, 1) == 0, "calib: %s", gptq_last_error());
    CHECK(calib_from_file(&c, tok, cal, 8, 64, 2) == 0, "calib: %s", gptq_last_error());
    CHECK(same_set(&a, &b), "same seed gives different windows");
    CHECK(!same_set(&a, &c), "different seeds give the same windows");
    calib_free(&c);
    size_t len;
    char *text = text_file_read(cal, &len, 0);
    int *all = NULL;
    int n = tokenizer_encode(tok, text, len, 0, &all);
    int found = 0;
    for (int off = 0; off + 64 <= n && !found; off++) found = memcmp(all + off, a.ids + 64 * 3, sizeof(int) * 64) == 0;
    CHECK(found, "window 3 is not a slice of the tokenized text");
    free(all);

    /* .jsonl: the "text" fields joined by blank lines */
    char path[2048];
    snprintf(path, sizeof path, "%s/c.jsonl", tmp);
    size_t half = len / 2;
    while (half < len && text[half] != ' ') half++;
    /* two records built from halves of the text */
    cJSON *r1 = cJSON_CreateObject(), *r2 = cJSON_CreateObject();
    char *p1 = xmalloc(half + 1);
    memcpy(p1, text, half), p1[half] = 0;
    cJSON_AddStringToObject(r1, "text", p1);
    cJSON_AddStringToObject(r2, "text", text + half);
    char *l1 = cJSON_PrintUnformatted(r1), *l2 = cJSON_PrintUnformatted(r2);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n\n%s\n", l1, l2);
    fclose(f);
    CHECK(calib_from_file(&c, tok, path, 4, 32, 5) == 0, "jsonl: %s", gptq_last_error());
    calib_free(&c);
    free(l1), free(l2), free(p1);
    cJSON_Delete(r1), cJSON_Delete(r2);

    /* errors name the file */
    snprintf(path, sizeof path, "%s/bad.jsonl", tmp);
    f = fopen(path, "w");
    fprintf(f, "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
    fclose(f);
    CHECK(calib_from_file(&c, tok, path, 4, 32, 5) != 0 && strstr(gptq_last_error(), "bad.jsonl: line 2"),
          "bad jsonl line: %s", gptq_last_error());
    snprintf(path, sizeof path, "%s/empty.txt", tmp);
    f = fopen(path, "w");
    fclose(f);
    CHECK(calib_from_file(&c, tok, path, 4, 32, 5) != 0 && strstr(gptq_last_error(), "empty.txt: empty"),
          "empty file: %s", gptq_last_error());
    snprintf(path, sizeof path, "%s/short.txt", tmp);
    f = fopen(path, "w");
    fprintf(f, "a few words only");
    fclose(f);
    CHECK(calib_from_file(&c, tok, path, 4, 32, 5) != 0 && strstr(gptq_last_error(), "short.txt: ") &&
              strstr(gptq_last_error(), "not enough"),
          "short file: %s", gptq_last_error());
    CHECK(calib_from_file(&c, tok, "/nonexistent/x.txt", 4, 32, 5) != 0 && strstr(gptq_last_error(), "x.txt"),
          "missing file: %s", gptq_last_error());

    /* model-written windows: BOS first, full length, no EOS, reproducible */
    llama_model m;
    CHECK(llama_load(&m, dir) == 0, "load: %s", gptq_last_error());
    calib_set g1, g2;
    CHECK(calib_generate(&g1, &m, tok, 3, 48, 9) == 0, "auto: %s", gptq_last_error());
    CHECK(calib_generate(&g2, &m, tok, 3, 48, 9) == 0, "auto: %s", gptq_last_error());
    CHECK(same_set(&g1, &g2), "model-written windows differ between runs with one seed");
    int ok = 1;
    for (int w = 0; w < 3; w++) {
        ok &= g1.ids[w * 48] == tokenizer_bos(tok);
        for (int t = 1; t < 48; t++) ok &= !tokenizer_is_eos(tok, g1.ids[w * 48 + t]) && g1.ids[w * 48 + t] < m.cfg.vocab_size;
    }
    CHECK(ok, "model-written windows: BOS first, no EOS, ids in the vocabulary");
    /* the lock-step (batched) forward gives each sequence the logits a single-sequence
     * forward gives it */
    llama_state *sb = llama_state_new_ex(&m, 48, 3, m.cfg.n_layers * 3);
    double maxd = 0;
    for (int pos = 0; pos < 47; pos++) {
        int cur[3] = {g1.ids[pos], g1.ids[48 + pos], g1.ids[96 + pos]};
        llama_forward_lockstep(&m, sb, cur, 3, pos);
    }
    for (int w = 0; w < 3; w++) {
        llama_state *sw = llama_state_new(&m, 48, 48);
        const float *lw = llama_forward(&m, sw, g1.ids + w * 48, 47, 0, 0);
        /* the lock-step state's last logits row w is the same prediction */
        for (int v = 0; v < m.cfg.vocab_size; v++) {
            double d = fabs(lw[v] - sb->logits[(size_t)w * m.cfg.vocab_size + v]);
            if (d > maxd) maxd = d;
        }
        llama_state_free(sw);
    }
    CHECK(maxd < 1e-3, "lock-step logits differ from single-sequence logits by %g", maxd);
    llama_state_free(sb);
    calib_free(&g1), calib_free(&g2);
    llama_free(&m);
    calib_free(&a), calib_free(&b);
    free(text);
    tokenizer_free(tok);
    return check_done();
}
