/* The forward pass against transformers' fp32 numbers (tests/fixtures/<model>.model.json,
 * made by tests/reference/model_fixtures.py): logits at the first and last position of a
 * few prompts, the greedy continuation, and perplexity on the first wikitext-2 windows. */
#include <cjson/cJSON.h>
#include <math.h>

#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "text/textfile.h"
#include "text/tokenizer.h"

static double rel_err(const float *ours, const cJSON *ref, int n) {
    double mx = 0, ref_mx = 0;
    for (int i = 0; i < n; i++) {
        double r = cJSON_GetArrayItem(ref, i)->valuedouble;
        if (fabs(ours[i] - r) > mx) mx = fabs(ours[i] - r);
        if (fabs(r) > ref_mx) ref_mx = fabs(r);
    }
    return mx / ref_mx;
}

static int *json_ints(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int *v = xmalloc(sizeof(int) * (*n + 1));
    for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static void test_model(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    const char *dir = check_shared(rel);
    snprintf(rel, sizeof rel, "tests/fixtures/%s.model.json", name);
    char *text = fs_read_all(check_src(rel), NULL);
    CHECK(text != NULL, "%s: fixture missing: %s", name, gptq_last_error());
    if (!text) return;
    cJSON *fx = cJSON_Parse(text);
    free(text);
    double tol = cJSON_GetObjectItem(fx, "tolerance")->valuedouble;

    llama_model m;
    int rc = llama_load(&m, dir);
    CHECK(rc == 0, "%s: load: %s", name, gptq_last_error());
    if (rc) return;
    int vocab = m.cfg.vocab_size;
    tokenizer *tok = tokenizer_load(dir);
    CHECK(tok != NULL, "%s: tokenizer: %s", name, gptq_last_error());

    /* logits at position 0 and at the last position */
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(fx, "prompts")) {
        int n;
        int *ids = json_ints(cJSON_GetObjectItem(p, "input_ids"), &n);
        if (tok) {
            const char *pt = cJSON_GetObjectItem(p, "text")->valuestring;
            int *ours = NULL;
            int k = tokenizer_encode(tok, pt, strlen(pt), 1, &ours);
            CHECK(k == n && memcmp(ours, ids, sizeof(int) * n) == 0, "%s: prompt '%.20s' tokenizes differently", name, pt);
            free(ours);
        }
        llama_state *s = llama_state_new(&m, n, n);
        const float *lg = llama_forward(&m, s, ids, n, 0, 1);
        double e0 = rel_err(lg, cJSON_GetObjectItem(p, "logits_pos0"), vocab);
        double el = rel_err(lg + (size_t)(n - 1) * vocab, cJSON_GetObjectItem(p, "logits_last"), vocab);
        CHECK(e0 <= tol, "%s: prompt '%.20s' position 0 logits rel err %.3g > %g", name, cJSON_GetObjectItem(p, "text")->valuestring, e0, tol);
        CHECK(el <= tol, "%s: prompt '%.20s' last logits rel err %.3g > %g", name, cJSON_GetObjectItem(p, "text")->valuestring, el, tol);
        printf("%s: prompt of %d tokens: logits rel err pos0 %.2e, last %.2e\n", name, n, e0, el);
        /* the same last logits through one-token decode steps (KV cache path) */
        llama_state *s2 = llama_state_new(&m, n, 1);
        const float *l2 = NULL;
        for (int t = 0; t < n; t++) l2 = llama_forward(&m, s2, &ids[t], 1, t, 0);
        double ed = rel_err(l2, cJSON_GetObjectItem(p, "logits_last"), vocab);
        CHECK(ed <= tol, "%s: decode-path last logits rel err %.3g", name, ed);
        llama_state_free(s2);
        llama_state_free(s);
        free(ids);
    }

    /* greedy continuation */
    const cJSON *g = cJSON_GetObjectItem(fx, "greedy");
    int np, nn;
    int *pids = json_ints(cJSON_GetObjectItem(g, "prompt_ids"), &np);
    int *want = json_ints(cJSON_GetObjectItem(g, "new_ids"), &nn);
    llama_state *s = llama_state_new(&m, np + nn, np);
    const float *lg = llama_forward(&m, s, pids, np, 0, 0);
    int same = 1;
    for (int i = 0; i < nn && same; i++) {
        int best = 0;
        for (int v = 1; v < vocab; v++)
            if (lg[v] > lg[best]) best = v;
        same = best == want[i];
        lg = llama_forward(&m, s, &best, 1, np + i, 0);
    }
    CHECK(same, "%s: greedy continuation differs from transformers'", name);
    llama_state_free(s);
    free(pids), free(want);

    /* perplexity on the first windows of wikitext-2, read as text (CRLF -> LF, the default)
     * and as raw bytes, each against transformers on the same text */
    const char *variants[2][2] = {{"wikitext2_lf", "text"}, {"wikitext2", "raw bytes"}};
    for (int v = 0; v < 2 && tok; v++) {
        const cJSON *w = cJSON_GetObjectItem(fx, variants[v][0]);
        CHECK(w != NULL, "%s: fixture lacks %s", name, variants[v][0]);
        if (!w) continue;
        size_t len;
        char *wt = text_file_read(check_shared("data/wikitext-2-raw/wiki.test.raw"), &len, v == 1);
        if (!wt) continue;
        int *ids = NULL;
        int n = tokenizer_encode(tok, wt, len, 0, &ids);
        CHECK(n == cJSON_GetObjectItem(w, "n_tokens")->valueint, "%s: wikitext-2 (%s) has %d tokens, transformers %d", name,
              variants[v][1], n, cJSON_GetObjectItem(w, "n_tokens")->valueint);
        ppl_result r;
        CHECK(ppl_evaluate(&m, ids, n, 512, 4, NULL, &r) == 0, "ppl: %s", gptq_last_error());
        double ref = cJSON_GetObjectItem(w, "ppl_first_4")->valuedouble;
        CHECK(fabs(r.ppl / ref - 1) < 1e-3, "%s: ppl of 4 windows (%s) %.4f vs transformers %.4f", name, variants[v][1], r.ppl, ref);
        printf("%s: wikitext-2 (%s) ppl of 4 windows of 512: %.4f, transformers %.4f\n", name, variants[v][1], r.ppl, ref);
        const cJSON *c256 = cJSON_GetObjectItem(w, "ctx256");
        if (c256) {
            CHECK(ppl_evaluate(&m, ids, n, 256, 8, NULL, &r) == 0, "ppl: %s", gptq_last_error());
            ref = cJSON_GetObjectItem(c256, "ppl")->valuedouble;
            CHECK(fabs(r.ppl / ref - 1) < 1e-3, "%s: ppl of 8 windows of 256 (%s) %.4f vs %.4f", name, variants[v][1], r.ppl, ref);
        }
        free(ids);
        free(wt);
    }
    tokenizer_free(tok);
    llama_free(&m);
    cJSON_Delete(fx);
}

int main(void) {
    test_model("stories260K");
    test_model("llama-bpe-26m");
    return check_done();
}
