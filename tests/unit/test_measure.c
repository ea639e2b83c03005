/* The measurement pass: GPTQ from a shared preparation equals plain GPTQ bit for bit; a
 * stories260K measurement is complete and sensible, survives a save/load round trip
 * exactly, resumes measuring only what is missing (to the same numbers), and a file
 * with another key or a malformed one is refused with an error naming it. */
#include <stdint.h>

#include "check.h"
#include "core/error.h"
#include "core/fs.h"
#include "model/llama.h"
#include "quant/gptq.h"
#include "quant/measure.h"
#include "quant/mixed.h"
#include "text/calib.h"
#include "text/tokenizer.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float gauss(void) {
    double s = 0;
    for (int i = 0; i < 4; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        s += (double)(rng >> 11) / 9007199254740992.0;
    }
    return (float)((s - 2.0) * 1.7);
}

static void prepared_equals_plain(void) {
    const int64_t out = 48, in = 96, rows = 300;
    float *w = malloc(sizeof(float) * out * in), *x = malloc(sizeof(float) * rows * in), *h = calloc(in * in, sizeof(float));
    for (int64_t i = 0; i < out * in; i++) w[i] = gauss() * 0.1f;
    for (int64_t i = 0; i < rows * in; i++) x[i] = gauss() * (1.0f + (float)(i % in) / 16.0f);
    for (int64_t i = 0; i < in; i++) x[i * 0 + 5] = 0; /* keep one column mostly small */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t a = 0; a < in; a++)
            for (int64_t b = 0; b < in; b++) h[a * in + b] += 2.0f * x[r * in + a] * x[r * in + b] / (float)rows;
    for (int64_t a = 0; a < in; a++) h[a * in + 7] = h[7 * in + a] = 0; /* a dead input */
    static const qsetting set[] = {{2, 32, 0}, {3, -1, 1}, {4, 64, 0}, {8, 32, 1}, {3, 96, 0}};
    for (int act = 0; act < 2; act++) {
        gptq_hinv hv;
        CHECK(gptq_prepare(h, in, act, 0.01f, &hv) == 0, "prepare: %s", gptq_last_error());
        CHECK(hv.n_dead == 1, "one dead input, got %d", hv.n_dead);
        for (size_t k = 0; k < sizeof set / sizeof *set; k++) {
            gptq_params p = gptq_default_params();
            p.bits = set[k].bits, p.group_size = set[k].group_size, p.sym = set[k].sym, p.act_order = act, p.block_size = 32;
            p.want_rel_err = 1;
            gptq_result a, b;
            CHECK(gptq_quantize(w, h, out, in, &p, &a) == 0, "plain: %s", gptq_last_error());
            CHECK(gptq_quantize_prepared(w, h, out, &hv, &p, &b) == 0, "prepared: %s", gptq_last_error());
            CHECK(memcmp(a.q.wq, b.q.wq, sizeof(float) * out * in) == 0 && memcmp(a.q.g_idx, b.q.g_idx, 4 * in) == 0,
                  "w%d g%d act %d: prepared differs from plain", p.bits, p.group_size, act);
            CHECK(a.loss == b.loss && a.err_sq == b.err_sq && a.rel_err == b.rel_err, "same loss and error");
            gptq_result_free(&a), gptq_result_free(&b);
        }
        gptq_params p = gptq_default_params();
        p.act_order = !act;
        gptq_result c;
        CHECK(gptq_quantize_prepared(w, h, out, &hv, &p, &c) == -1 && strstr(gptq_last_error(), "act-order"),
              "an act-order mismatch is refused");
        gptq_hinv_free(&hv);
    }
    free(w), free(x), free(h);
}

static int same_results(const measurement *a, const measurement *b) {
    if (a->n != b->n) return 0;
    for (int k = 0; k < a->n; k++) {
        const measure_layer *x = &a->layers[k], *y = &b->layers[k];
        if (x->measured != y->measured || x->n_entries != y->n_entries || strcmp(x->name, y->name) != 0) {
            fprintf(stderr, "%s: measured %d/%d entries %d/%d\n", x->name, x->measured, y->measured, x->n_entries, y->n_entries);
            return 0;
        }
        /* (the KLs are OpenMP reductions: equal to the last bits only up to the order of the partial sums) */
        int sens_same = x->n_sens == y->n_sens;
        for (int i = 0; i < x->n_sens && sens_same; i++)
            sens_same = fabs(x->sens[i].kl - y->sens[i].kl) <= 1e-12 * x->sens[i].kl && x->sens[i].rel_err == y->sens[i].rel_err &&
                        fabs(x->sens[i].dnll - y->sens[i].dnll) <= 1e-9;
        if (x->measured && (x->energy != y->energy || !sens_same)) {
            fprintf(stderr, "%s: energy %.17g vs %.17g, KL %.17g vs %.17g\n", x->name, x->energy, y->energy, x->sens_kl, y->sens_kl);
            return 0;
        }
        for (int e = 0; e < x->n_entries && x->measured; e++)
            if (x->entries[e].rel_err != y->entries[e].rel_err || x->entries[e].loss != y->entries[e].loss ||
                x->entries[e].storage_bits != y->entries[e].storage_bits || x->entries[e].s.bits != y->entries[e].s.bits)
                return 0;
    }
    return 1;
}

int main(void) {
    prepared_equals_plain();

    const char *dir = check_shared("models/stories260K");
    const char *cal = check_shared("data/calib/calib_mix.txt");
    const char *tmp = check_tmpdir("measure");
    llama_model m;
    CHECK(llama_load(&m, dir) == 0, "load: %s", gptq_last_error());
    tokenizer *tok = tokenizer_load(dir);
    calib_set calib;
    CHECK(tok && calib_from_file(&calib, tok, cal, 8, 64, 3) == 0, "calib: %s", gptq_last_error());

    measurement ms = {0};
    measure_default_menu(&ms, 1);
    CHECK(ms.n_menu == 32, "default menu of 32 settings, got %d", ms.n_menu);
    CHECK(measurement_init(&ms, &m, dir, &calib, 0.01f, 1, 0, 128) == 0, "init: %s", gptq_last_error());
    char *path = fs_join(tmp, "m.json");
    CHECK(measure_model(&m, &calib, &ms, path) == 0, "measure: %s", gptq_last_error());
    int fit = 0;
    for (int k = 0; k < ms.n; k++) {
        measure_layer *L = &ms.layers[k];
        if (L->id == LIN_DOWN) {
            CHECK(L->n_entries == 0 && !L->measured, "172-wide down_proj has no setting");
            continue;
        }
        fit++;
        CHECK(L->measured && L->energy > 0, "%s measured", L->name);
        CHECK(L->sens_kl > 0 && L->sensitivity > 0 && (L->sens_ref.bits == 3 || L->id == LIN_GATE || L->id == LIN_UP), "%s: sensitivity %g (KL %g at w%d)", L->name,
              L->sensitivity, L->sens_kl, L->sens_ref.bits);
        CHECK(L->n_sens == MEASURE_SENS_REFS, "%s: %d reference points", L->name, L->n_sens);
        for (int i = 0; i < L->n_sens; i++)
            for (int j = 0; j < L->n_sens; j++)
                if (L->sens[i].s.bits < L->sens[j].s.bits)
                    CHECK(L->sens[i].kl > L->sens[j].kl && L->sens[i].rel_err > L->sens[j].rel_err,
                          "%s: KL %g at w%d above %g at w%d", L->name, L->sens[i].kl, L->sens[i].s.bits, L->sens[j].kl,
                          L->sens[j].s.bits);
        double e8 = -1, e2 = -1;
        for (int e = 0; e < L->n_entries; e++) {
            const measure_entry *me = &L->entries[e];
            CHECK(me->rel_err >= 0 && me->rel_err < 1.5 && me->loss >= 0, "%s: rel_err %g", L->name, me->rel_err);
            if (me->s.group_size == -1 && !me->s.sym && me->s.bits == 8) e8 = me->rel_err;
            if (me->s.group_size == -1 && !me->s.sym && me->s.bits == 2) e2 = me->rel_err;
        }
        if (e2 >= 0) CHECK(e8 < e2 / 10, "%s: 8-bit error %g well below 2-bit %g", L->name, e8, e2);
    }
    CHECK(fit == 30 && ms.measured_now == 30, "30 Linears measured (%d)", ms.measured_now);
    /* ΔNLL of the calibration windows' next tokens, recorded at every reference point: the
     * float model's own NLL is a sane number, and 2-bit quantization raises the NLL on
     * the whole (single Linears may come out either way) */
    CHECK(ms.sens_float_nll > 0.5 && ms.sens_float_nll < 12, "float NLL of the sensitivity windows: %g", ms.sens_float_nll);
    double dnll2 = 0;
    for (int k = 0; k < ms.n; k++)
        for (int i = 0; i < ms.layers[k].n_sens; i++) {
            CHECK(isfinite(ms.layers[k].sens[i].dnll), "%s: dnll recorded", ms.layers[k].name);
            if (ms.layers[k].sens[i].s.bits == 2) dnll2 += ms.layers[k].sens[i].dnll;
        }
    CHECK(dnll2 > 0, "2-bit quantization raises the NLL in sum (%g)", dnll2);

    /* round trip */
    measurement back;
    CHECK(measurement_load(&back, path) == 0, "load: %s", gptq_last_error());
    measurement fresh = {0};
    measure_default_menu(&fresh, 1);
    measurement_init(&fresh, &m, dir, &calib, 0.01f, 1, 0, 128);
    CHECK(measurement_adopt(&fresh, &back, path) == 0, "adopt: %s", gptq_last_error());
    CHECK(same_results(&fresh, &ms), "save/load round trip is exact");
    CHECK(measure_model(&m, &calib, &fresh, NULL) == 0 && fresh.measured_now == 0, "nothing left to measure");

    /* resume: forget some layers, measure again, get the same numbers */
    measurement part = {0};
    measure_default_menu(&part, 1);
    measurement_init(&part, &m, dir, &calib, 0.01f, 1, 0, 128);
    measurement_adopt(&part, &back, path);
    for (int k = 9; k < part.n; k += 2) part.layers[k].measured = 0;
    char *ppath = fs_join(tmp, "part.json");
    CHECK(measurement_save(&part, ppath) == 0, "save part");
    measurement part2 = {0}, loaded;
    measure_default_menu(&part2, 1);
    measurement_init(&part2, &m, dir, &calib, 0.01f, 1, 0, 128);
    CHECK(measurement_load(&loaded, ppath) == 0 && measurement_adopt(&part2, &loaded, ppath) == 0, "adopt part");
    CHECK(measure_model(&m, &calib, &part2, ppath) == 0, "resume: %s", gptq_last_error());
    int dropped = 0;
    for (int k = 9; k < part.n; k += 2) dropped += part.layers[k].n_entries > 0;
    CHECK(part2.measured_now == dropped, "resumed %d Linears, expected %d", part2.measured_now, dropped);
    CHECK(same_results(&part2, &ms), "resumed measurement equals the uninterrupted one");

    /* the plan from it fits the budget */
    gptq_params base = gptq_default_params();
    base.act_order = 1;
    mixed_plan plan;
    CHECK(mixed_plan_measured(&ms, &base, 7.0, MIXED_ERR_SQ, &plan) == 0, "plan: %s", gptq_last_error());
    CHECK(plan.bits <= plan.budget_bits && plan.bpw <= 7.0 && plan.st.exact, "plan within budget: %.4f", plan.bpw);
    mixed_plan_free(&plan);
    CHECK(mixed_plan_llamacpp(&ms, &base, 7.0, &plan) == 0 && plan.bpw <= 7.0, "llama.cpp plan: %s", gptq_last_error());
    mixed_plan_free(&plan);

    /* a format-2 file (one sensitivity reference) loads; its Linears are measured again */
    {
        size_t len = 0;
        char *text = fs_read_all(path, &len), *at = strstr(text, "gptq-measurement-3");
        CHECK(at != NULL, "the file says format 3");
        at[strlen("gptq-measurement-")] = '2';
        char *v2 = fs_join(tmp, "v2.json");
        fs_write_file(v2, text, len);
        measurement old, again = {0};
        CHECK(measurement_load(&old, v2) == 0, "format 2 loads: %s", gptq_last_error());
        CHECK(old.layers[0].n_sens == 0, "format 2: no reference points");
        measure_default_menu(&again, 1);
        measurement_init(&again, &m, dir, &calib, 0.01f, 1, 0, 128);
        CHECK(measurement_adopt(&again, &old, v2) == 0, "adopt format 2: %s", gptq_last_error());
        int reused = 0;
        for (int k = 0; k < again.n; k++) reused += again.layers[k].measured;
        CHECK(reused == 0, "format-2 layers are measured again (%d reused)", reused);
        measurement_free(&old), measurement_free(&again);
        free(text), free(v2);
    }

    /* a format-3 file written before ΔNLL was recorded (no "dnll" keys) loads and plans by kl;
     * the nll objective refuses it */
    {
        measurement nod = {0}, back3;
        measure_default_menu(&nod, 1);
        measurement_init(&nod, &m, dir, &calib, 0.01f, 1, 0, 128);
        measurement_adopt(&nod, &back, path);
        nod.sens_float_nll = NAN;
        for (int k = 0; k < nod.n; k++)
            for (int i = 0; i < nod.layers[k].n_sens; i++) nod.layers[k].sens[i].dnll = NAN;
        char *p3 = fs_join(tmp, "nodnll.json");
        CHECK(measurement_save(&nod, p3) == 0, "save without dnll");
        char *text = fs_read_all(p3, NULL);
        CHECK(text && !strstr(text, "dnll") && !strstr(text, "float_nll"), "no dnll keys written");
        free(text);
        CHECK(measurement_load(&back3, p3) == 0, "format 3 without dnll loads: %s", gptq_last_error());
        CHECK(isnan(back3.layers[0].sens[0].dnll) && isnan(back3.sens_float_nll), "its dnll are NAN");
        CHECK(mixed_plan_measured(&back3, &base, 7.0, MIXED_KL, &plan) == 0, "kl plans it: %s", gptq_last_error());
        mixed_plan_free(&plan);
        CHECK(mixed_plan_measured(&back3, &base, 7.0, MIXED_NLL, &plan) == -1 &&
                  strstr(gptq_last_error(), "measured without the NLL sensitivities"),
              "nll refuses it: %s", gptq_last_error());
        CHECK(mixed_plan_measured(&ms, &base, 7.0, MIXED_NLL, &plan) == 0 && plan.bpw <= 7.0, "nll plans a new one: %s",
              gptq_last_error());
        mixed_plan_free(&plan);
        measurement_free(&nod), measurement_free(&back3);
        free(p3);
    }

    /* another key: refused, naming the file and the difference */
    measurement other = {0};
    measure_default_menu(&other, 1);
    measurement_init(&other, &m, dir, &calib, 0.02f, 1, 0, 128);
    CHECK(measurement_adopt(&other, &back, path) == -1 && strstr(gptq_last_error(), "m.json: measured with damping"),
          "damping mismatch: %s", gptq_last_error());
    /* malformed files */
    char *bad = fs_join(tmp, "bad.json");
    const char *bad_text = "{\"format\": \"gptq-measurement-2\", \"key\": 3}";
    fs_write_file(bad, bad_text, strlen(bad_text));
    measurement junk;
    CHECK(measurement_load(&junk, bad) == -1 && strstr(gptq_last_error(), "bad.json: not a measurement file"), "bad: %s",
          gptq_last_error());
    const char *old_text = "{\"format\": \"gptq-measurement-1\"}";
    fs_write_file(bad, old_text, strlen(old_text));
    CHECK(measurement_load(&junk, bad) == -1 && strstr(gptq_last_error(), "is not gptq-measurement-3"), "old format: %s",
          gptq_last_error());
    fs_write_file(bad, "{not json", 9);
    CHECK(measurement_load(&junk, bad) == -1 && strstr(gptq_last_error(), "bad.json: not valid JSON"), "junk: %s",
          gptq_last_error());

    measurement_free(&ms), measurement_free(&back), measurement_free(&fresh), measurement_free(&part);
    measurement_free(&part2), measurement_free(&loaded), measurement_free(&other);
    free(path), free(ppath), free(bad);
    calib_free(&calib);
    tokenizer_free(tok);
    llama_free(&m);
    return check_done();
}
