/* GGUF: writer -> reader round trip of every value type and several tensor types; strict
 * rejection of damaged files (truncations at every length, bad fields) with an error
 * naming the file; the exported stories260K file read back (shapes, q/k permutation, and
 * the same greedy output and logits as the Hugging Face directory). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/gguf.h"
#include "io/gguf_export.h"
#include "model/llama.h"
#include "quant/ggml_quants.h"
#include "text/tokenizer.h"

static int fill_ramp(void *ctx, void *dst, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) ((unsigned char *)dst)[i] = (unsigned char)(i * 7 + 3);
    return 0;
}

static void round_trip(const char *dir) {
    char *path = fs_join(dir, "rt.gguf");
    gguf_writer *w = gguf_writer_new();
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_u32(w, "a.u32", 4000000000u);
    gguf_w_i32(w, "a.i32", -7);
    gguf_w_f32(w, "a.f32", 0.125f);
    gguf_w_bool(w, "a.bool", 1);
    const char *strs[3] = {"x", "", "h\xC3\xA9llo"};
    gguf_w_arr_str(w, "a.strs", strs, NULL, 3);
    float fa[4] = {1, -2, 3.5f, 0};
    gguf_w_arr_f32(w, "a.f32s", fa, 4);
    int32_t ia[2] = {-1, 5};
    gguf_w_arr_i32(w, "a.i32s", ia, 2);
    float v[64 * 3];
    for (int i = 0; i < 64 * 3; i++) v[i] = (float)i / 7.0f - 3.0f;
    int64_t ne[2] = {64, 3};
    gguf_w_tensor(w, "t.f32", GGML_T_F32, 2, ne, v, NULL, NULL);
    int64_t ne1[1] = {256};
    gguf_w_tensor(w, "t.q4_k", GGML_T_Q4_K, 1, ne1, NULL, fill_ramp, NULL);
    int64_t ne3[3] = {32, 2, 2};
    gguf_w_tensor(w, "t.q8_0", GGML_T_Q8_0, 3, ne3, NULL, fill_ramp, NULL);
    CHECK(gguf_writer_write(w, path) == 0, "write: %s", gptq_last_error());
    gguf_writer_free(w);

    gguf_file g;
    CHECK(gguf_open(&g, path) == 0, "open: %s", gptq_last_error());
    uint32_t u = 0;
    float f = 0;
    int b = 0;
    const char *s = NULL;
    CHECK(gguf_get_u32(&g, "a.u32", 1, &u) == 0 && u == 4000000000u, "u32");
    CHECK(gguf_find(&g, "a.i32")->num.i == -7, "i32");
    CHECK(gguf_get_u32(&g, "a.i32", 1, &u) != 0 && strstr(gptq_last_error(), "out of range"), "negative as u32: %s", gptq_last_error());
    CHECK(gguf_get_f32(&g, "a.f32", 1, &f) == 0 && f == 0.125f, "f32");
    CHECK(gguf_get_bool(&g, "a.bool", 1, &b) == 0 && b == 1, "bool");
    CHECK(gguf_get_str(&g, "general.architecture", 1, &s) == 0 && strcmp(s, "llama") == 0, "str");
    CHECK(gguf_get_str(&g, "a.f32", 1, &s) != 0 && strstr(gptq_last_error(), "rt.gguf"), "type error names the file: %s", gptq_last_error());
    CHECK(gguf_get_u32(&g, "missing", 1, &u) != 0 && strstr(gptq_last_error(), "missing"), "missing key");
    u = 9;
    CHECK(gguf_get_u32(&g, "missing", 0, &u) == 0 && u == 9, "optional missing key");
    const gguf_kv *a = gguf_get_arr(&g, "a.strs", 1, GGUF_STRING);
    CHECK(a && a->n == 3 && strcmp(a->strs[2], "h\xC3\xA9llo") == 0 && a->str_lens[1] == 0, "string array");
    a = gguf_get_arr(&g, "a.f32s", 1, GGUF_F32);
    CHECK(a && a->n == 4 && gguf_arr_f(a, 2) == 3.5, "f32 array");
    a = gguf_get_arr(&g, "a.i32s", 1, GGUF_I32);
    CHECK(a && gguf_arr_i(a, 0) == -1 && gguf_arr_i(a, 1) == 5, "i32 array");
    CHECK(gguf_get_arr(&g, "a.i32s", 1, GGUF_F32) == NULL, "array element type checked");
    const gguf_tensor *t = gguf_find_tensor(&g, "t.f32");
    CHECK(t && t->type == GGML_T_F32 && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 3 && memcmp(t->data, v, sizeof v) == 0,
          "f32 tensor");
    t = gguf_find_tensor(&g, "t.q4_k");
    CHECK(t && t->nbytes == 144 && ((const unsigned char *)t->data)[5] == 38, "q4_k tensor");
    t = gguf_find_tensor(&g, "t.q8_0");
    CHECK(t && t->n_dims == 3 && t->nbytes == 4 * 34 && t->ne[2] == 2, "q8_0 tensor");
    for (int i = 0; i < g.n_tensors; i++)
        CHECK(((uintptr_t)g.tensors[i].data - (uintptr_t)g.map.data) % 32 == 0, "tensor %d aligned", i);
    gguf_close(&g);

    /* every truncation of the file is refused with a message naming it */
    size_t len;
    char *bytes = fs_read_all(path, &len);
    char *bad = fs_join(dir, "bad.gguf");
    int all_refused = 1, all_named = 1;
    for (size_t cut = 0; cut < len; cut += (cut < 400 ? 1 : 97)) {
        fs_write_file(bad, bytes, cut);
        if (gguf_open(&g, bad) == 0) {
            all_refused = 0;
            gguf_close(&g);
        } else if (!strstr(gptq_last_error(), "bad.gguf")) {
            all_named = 0;
        }
    }
    CHECK(all_refused, "a truncated file was accepted");
    CHECK(all_named, "an error did not name the file");

    /* single damaged fields */
    struct {
        size_t off;
        unsigned char val;
        const char *msg;
    } cases[] = {
        {0, 'X', "magic"},
        {4, 1, "version 1"},
        {4, 9, "unsupported GGUF version"},
        {16, 0xff, "more than the file can hold"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *c = malloc(len);
        memcpy(c, bytes, len);
        c[cases[k].off] = (char)cases[k].val;
        fs_write_file(bad, c, len);
        CHECK(gguf_open(&g, bad) != 0 && strstr(gptq_last_error(), cases[k].msg), "case %zu: %s", k, gptq_last_error());
        free(c);
    }
    /* a key written twice, an unaligned row length */
    w = gguf_writer_new();
    gguf_w_u32(w, "k", 1);
    gguf_w_u32(w, "k", 2);
    CHECK(gguf_writer_write(w, bad) != 0 && strstr(gptq_last_error(), "twice"), "duplicate key: %s", gptq_last_error());
    gguf_writer_free(w);
    w = gguf_writer_new();
    int64_t ne_bad[2] = {48, 2};
    gguf_w_tensor(w, "t", GGML_T_Q4_0, 2, ne_bad, NULL, fill_ramp, NULL);
    CHECK(gguf_writer_write(w, bad) != 0 && strstr(gptq_last_error(), "block size"), "row length: %s", gptq_last_error());
    gguf_writer_free(w);
    free(bad);
    free(bytes);
    free(path);
}

static void stories(const char *dir) {
    const char *hf = check_shared("models/stories260K");
    char *path = fs_join(dir, "s.gguf");
    gguf_export_opts o = {.type = GGML_T_F32};
    CHECK(gguf_export_model(hf, path, &o) == 0, "export: %s", gptq_last_error());
    llama_model a, b;
    CHECK(llama_load(&a, hf) == 0, "load hf");
    CHECK(llama_load(&b, path) == 0, "load gguf: %s", gptq_last_error());
    CHECK(a.cfg.n_layers == b.cfg.n_layers && a.cfg.head_dim == b.cfg.head_dim && a.cfg.vocab_size == b.cfg.vocab_size &&
              b.cfg.tie_embeddings && a.n_params == b.n_params,
          "config");
    /* q/k un-permuted on load: every weight row identical to the HF one */
    int same = 1;
    float ra[256], rb[256];
    for (int l = 0; l < a.cfg.n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++)
            for (int64_t r = 0; r < a.layers[l].lin[j].out; r++) {
                linear_row_f32(&a.layers[l].lin[j], r, ra);
                linear_row_f32(&b.layers[l].lin[j], r, rb);
                same &= memcmp(ra, rb, sizeof(float) * (size_t)a.layers[l].lin[j].in) == 0;
            }
    CHECK(same, "weights differ after the GGUF round trip");
    tokenizer *ta = tokenizer_load(hf), *tb = tokenizer_load(path);
    CHECK(tb != NULL, "gguf tokenizer: %s", gptq_last_error());
    if (ta && tb) {
        const char *text = "Once upon a time, Lily saw a big dog.\nIt was happy! 123 \xE2\x9C\x93";
        int *ia, *ib;
        int na = tokenizer_encode(ta, text, strlen(text), 1, &ia), nb = tokenizer_encode(tb, text, strlen(text), 1, &ib);
        CHECK(na == nb && memcmp(ia, ib, sizeof(int) * (size_t)na) == 0, "token ids differ (%d vs %d)", na, nb);
        char *da = tokenizer_decode(ta, ia, na), *db = tokenizer_decode(tb, ib, nb);
        CHECK(da && db && strcmp(da, db) == 0, "decode differs: '%s' vs '%s'", da, db);
        free(da), free(db), free(ia), free(ib);
    }
    tokenizer_free(ta);
    tokenizer_free(tb);
    llama_free(&a);
    llama_free(&b);

    /* a q8_0 export runs too, close to the float model */
    char *q = fs_join(dir, "s-q8.gguf");
    o.type = GGML_T_Q8_0;
    CHECK(gguf_export_model(hf, q, &o) == 0, "q8_0 export: %s", gptq_last_error());
    CHECK(llama_load_ex(&b, q, LLAMA_LOAD_DEQUANTIZE) == 0, "load q8_0: %s", gptq_last_error());
    CHECK(b.layers[0].lin[LIN_Q].dtype == DT_F32 && b.layers[0].lin[LIN_DOWN].dtype == DT_F16, "q8_0 dequantized, 172-wide down_proj fell back to f16");
    llama_free(&b);

    /* q4_0 / q8_0 run on the fused GPTQ kernels: same weights (rows un-permuted) and logits
     * as the dequantized load */
    const ggml_type fused_types[2] = {GGML_T_Q4_0, GGML_T_Q8_0};
    for (int k = 0; k < 2; k++) {
        o.type = fused_types[k];
        CHECK(gguf_export_model(hf, q, &o) == 0, "export: %s", gptq_last_error());
        llama_model f, d;
        CHECK(llama_load(&f, q) == 0 && llama_load_ex(&d, q, LLAMA_LOAD_DEQUANTIZE) == 0, "load: %s", gptq_last_error());
        CHECK(f.layers[0].lin[LIN_Q].qk != NULL && f.layers[2].lin[LIN_K].qk != NULL && d.layers[0].lin[LIN_Q].qk == NULL,
              "%s layers on the fused kernels", ggml_traits(o.type)->name);
        int rows_same = 1;
        for (int l = 0; l < f.cfg.n_layers; l++)
            for (int j = 0; j < LIN_COUNT; j++)
                for (int64_t r = 0; r < f.layers[l].lin[j].out; r++) {
                    linear_row_f32(&f.layers[l].lin[j], r, ra);
                    linear_row_f32(&d.layers[l].lin[j], r, rb);
                    rows_same &= memcmp(ra, rb, sizeof(float) * (size_t)f.layers[l].lin[j].in) == 0;
                }
        CHECK(rows_same, "%s: fused weights differ from the dequantized ones", ggml_traits(o.type)->name);
        llama_state *sf = llama_state_new(&f, 16, 16), *sd = llama_state_new(&d, 16, 16);
        int ids[6] = {1, 403, 261, 9, 71, 300};
        const float *lf = llama_forward(&f, sf, ids, 6, 0, 0), *ld = llama_forward(&d, sd, ids, 6, 0, 0);
        double md = 0, mx = 0;
        for (int v = 0; v < f.cfg.vocab_size; v++) {
            md = fmax(md, fabs(lf[v] - ld[v]));
            mx = fmax(mx, fabs(ld[v]));
        }
        CHECK(md <= 1e-4 * mx, "%s: fused logits differ by %g (max %g)", ggml_traits(o.type)->name, md, mx);
        llama_state_free(sf);
        llama_state_free(sd);
        llama_free(&f);
        llama_free(&d);
    }
    free(q);
    free(path);
}

int main(void) {
    const char *dir = check_tmpdir("gguf");
    round_trip(dir);
    stories(dir);
    return check_done();
}
