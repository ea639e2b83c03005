#include "quant/measure.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/klwin.h"
#include "quant/pack.h"
#include "quant/pipeline.h"

#define MEASURE_FORMAT "gptq-measurement-3"
/* the format before the 2- and 4-bit KL points: read, its Linears measured again */
#define MEASURE_FORMAT_V2 "gptq-measurement-2"
/* float log-probabilities kept for the sensitivity windows: at most this many bytes */
#define SENS_BUDGET ((size_t)256 << 20)
#define SENS_MAX_WINDOWS 4

void measure_default_menu(measurement *ms, int with_sym) {
    static const int bits[] = {2, 3, 4, 8}, groups[] = {32, 64, 128, -1};
    ms->n_menu = 0;
    for (int b = 0; b < 4; b++)
        for (int g = 0; g < 4; g++)
            for (int sym = 0; sym <= with_sym; sym++) ms->menu[ms->n_menu++] = (qsetting){bits[b], groups[g], sym};
}

int measure_setting_fits(int64_t out, int64_t in, const qsetting *s) {
    if (gptq_pack_check(out, in, s->bits) != 0) {
        gptq_clear_error();
        return 0;
    }
    return s->group_size == -1 || (s->group_size > 0 && s->group_size < in && in % s->group_size == 0);
}

static void fill_entries(measure_layer *L, const measurement *ms) {
    free(L->entries);
    L->entries = xcalloc(ms->n_menu ? (size_t)ms->n_menu : 1, sizeof(measure_entry));
    L->n_entries = 0;
    for (int i = 0; i < ms->n_menu; i++)
        if (measure_setting_fits(L->out, L->in, &ms->menu[i])) {
            measure_entry *e = &L->entries[L->n_entries++];
            e->s = ms->menu[i];
            e->storage_bits = gptq_storage_bits(L->out, L->in, e->s.bits, e->s.group_size, 1);
            e->rel_err = e->loss = NAN;
        }
}

int measurement_init(measurement *ms, const llama_model *m, const char *model_dir, const calib_set *calib, float damp,
                     int act_order, int mse, int block) {
    int n_menu = ms->n_menu;
    qsetting menu[MEASURE_MAX_MENU];
    memcpy(menu, ms->menu, sizeof menu);
    memset(ms, 0, sizeof *ms);
    ms->n_menu = n_menu;
    memcpy(ms->menu, menu, sizeof menu);
    if (n_menu < 1) return gptq_fail("measurement: empty menu");
    char *real = realpath(model_dir, NULL);
    snprintf(ms->model, sizeof ms->model, "%s", real ? real : model_dir);
    free(real);
    char *p = fs_join(model_dir, "config.json");
    size_t len = 0;
    char *text = fs_read_all(p, &len);
    free(p);
    if (!text) return -1;
    sha256_hex(text, len, ms->config_sha256);
    free(text);
    sha256_hex(calib->ids, sizeof(int) * (size_t)calib->n * calib->seqlen, ms->calib_sha256);
    ms->nsamples = calib->n, ms->seqlen = calib->seqlen;
    ms->damp = damp, ms->act_order = act_order, ms->mse = mse, ms->block = block;
    ms->n_layers = m->cfg.n_layers;
    ms->n = ms->n_layers * LIN_COUNT;
    ms->sens_float_nll = NAN;
    ms->layers = xcalloc((size_t)ms->n, sizeof(measure_layer));
    for (int k = 0; k < ms->n; k++) {
        measure_layer *L = &ms->layers[k];
        const linear *l = &m->layers[k / LIN_COUNT].lin[k % LIN_COUNT];
        L->layer = k / LIN_COUNT, L->id = k % LIN_COUNT;
        snprintf(L->name, sizeof L->name, "model.layers.%d.%s", L->layer, llama_linear_name((llama_linear_id)L->id));
        L->out = l->out, L->in = l->in;
        L->energy = NAN;
        fill_entries(L, ms);
    }
    return 0;
}

void measurement_free(measurement *ms) {
    for (int k = 0; k < ms->n; k++) free(ms->layers[k].entries);
    free(ms->layers);
    memset(ms, 0, sizeof *ms);
}

static int key_diff(const measurement *a, const measurement *b, char *why, size_t n) {
    if (strcmp(a->model, b->model) != 0) snprintf(why, n, "model %.200s, not %.200s", b->model, a->model);
    else if (strcmp(a->config_sha256, b->config_sha256) != 0) snprintf(why, n, "a different config.json");
    else if (strcmp(a->calib_sha256, b->calib_sha256) != 0 || a->nsamples != b->nsamples || a->seqlen != b->seqlen)
        snprintf(why, n, "other calibration windows (%d x %d, ids sha256 %.12s..., not %d x %d, %.12s...)", b->nsamples,
                 b->seqlen, b->calib_sha256, a->nsamples, a->seqlen, a->calib_sha256);
    else if (a->damp != b->damp) snprintf(why, n, "damping %g, not %g", (double)b->damp, (double)a->damp);
    else if (a->act_order != b->act_order) snprintf(why, n, "act-order %s", b->act_order ? "on" : "off");
    else if (a->mse != b->mse) snprintf(why, n, "MSE grids %s", b->mse ? "on" : "off");
    else if (a->block != b->block) snprintf(why, n, "block %d, not %d", b->block, a->block);
    else return 0;
    return 1;
}

int measurement_adopt(measurement *ms, const measurement *from, const char *what) {
    char why[512];
    if (key_diff(ms, from, why, sizeof why)) return gptq_fail("%s: measured with %s; use another file", what, why);
    ms->seconds = from->seconds;
    ms->sens_windows = from->sens_windows;
    ms->sens_float_nll = from->sens_float_nll;
    int old = 0;
    for (int k = 0; k < ms->n; k++) {
        measure_layer *L = &ms->layers[k];
        const measure_layer *F = NULL;
        for (int j = 0; j < from->n && !F; j++)
            if (strcmp(from->layers[j].name, L->name) == 0) F = &from->layers[j];
        if (F && F->measured && F->n_sens != MEASURE_SENS_REFS) old++;
        if (!F || !F->measured || F->n_sens != MEASURE_SENS_REFS) continue; /* (a format-2 file: measured again) */
        if (F->out != L->out || F->in != L->in)
            return gptq_fail("%s: %s is (%lld, %lld) there, (%lld, %lld) in the model", what, L->name, (long long)F->out,
                             (long long)F->in, (long long)L->out, (long long)L->in);
        int all = 1;
        for (int e = 0; e < L->n_entries && all; e++) {
            const measure_entry *fe = NULL;
            for (int j = 0; j < F->n_entries && !fe; j++)
                if (F->entries[j].s.bits == L->entries[e].s.bits && F->entries[j].s.group_size == L->entries[e].s.group_size &&
                    F->entries[j].s.sym == L->entries[e].s.sym)
                    fe = &F->entries[j];
            if (!fe) all = 0;
            else L->entries[e].rel_err = fe->rel_err, L->entries[e].loss = fe->loss;
        }
        if (all) {
            L->measured = 1, L->energy = F->energy, L->sensitivity = F->sensitivity, L->sens_kl = F->sens_kl, L->sens_ref = F->sens_ref;
            L->n_sens = F->n_sens;
            memcpy(L->sens, F->sens, sizeof L->sens);
        }
    }
    if (old) gptq_warn("%s: %d Linears measured by an older version (one KL point, " MEASURE_FORMAT_V2 "): measuring them again", what, old);
    return 0;
}

/* ---------------- the file ---------------- */

/* A double that reads back bit for bit (cJSON's own printing settles for 15 digits when
 * they compare equal within an epsilon). */
static void add_exact(cJSON *o, const char *name, double v) {
    char buf[40];
    if (!isfinite(v)) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    snprintf(buf, sizeof buf, "%.17g", v);
    cJSON_AddRawToObject(o, name, buf);
}

static cJSON *setting_json(const qsetting *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "bits", s->bits);
    cJSON_AddNumberToObject(o, "group_size", s->group_size);
    cJSON_AddBoolToObject(o, "sym", s->sym);
    return o;
}

int measurement_save(const measurement *ms, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", MEASURE_FORMAT);
    cJSON *key = cJSON_AddObjectToObject(root, "key");
    cJSON_AddStringToObject(key, "model", ms->model);
    cJSON_AddStringToObject(key, "config_sha256", ms->config_sha256);
    cJSON_AddStringToObject(key, "calib_sha256", ms->calib_sha256);
    cJSON_AddNumberToObject(key, "nsamples", ms->nsamples);
    cJSON_AddNumberToObject(key, "seqlen", ms->seqlen);
    cJSON_AddNumberToObject(key, "damp", ms->damp);
    cJSON_AddBoolToObject(key, "act_order", ms->act_order);
    cJSON_AddBoolToObject(key, "mse", ms->mse);
    cJSON_AddNumberToObject(key, "block", ms->block);
    cJSON_AddStringToObject(root, "inputs", "float model activations");
    cJSON_AddStringToObject(root, "error", "relative output error ||(W-Q)X||_F / ||WX||_F");
    cJSON *menu = cJSON_AddArrayToObject(root, "menu");
    for (int i = 0; i < ms->n_menu; i++) cJSON_AddItemToArray(menu, setting_json(&ms->menu[i]));
    cJSON_AddNumberToObject(root, "n_layers", ms->n_layers);
    cJSON_AddNumberToObject(root, "seconds", ms->seconds);
    cJSON_AddNumberToObject(root, "sensitivity_windows", ms->sens_windows);
    if (isfinite(ms->sens_float_nll)) add_exact(root, "sensitivity_float_nll", ms->sens_float_nll);
    cJSON *arr = cJSON_AddArrayToObject(root, "layers");
    for (int k = 0; k < ms->n; k++) {
        const measure_layer *L = &ms->layers[k];
        if (!L->measured) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "module", L->name);
        cJSON_AddNumberToObject(o, "layer", L->layer);
        cJSON_AddStringToObject(o, "sublayer", llama_linear_name((llama_linear_id)L->id));
        cJSON_AddNumberToObject(o, "out", (double)L->out);
        cJSON_AddNumberToObject(o, "in", (double)L->in);
        add_exact(o, "energy", L->energy);
        add_exact(o, "sensitivity", L->sensitivity);
        add_exact(o, "sensitivity_kl", L->sens_kl);
        cJSON_AddItemToObject(o, "sensitivity_setting", setting_json(&L->sens_ref));
        cJSON *pts = cJSON_AddArrayToObject(o, "sensitivity_points");
        for (int i = 0; i < L->n_sens; i++) {
            cJSON *x = setting_json(&L->sens[i].s);
            add_exact(x, "rel_err", L->sens[i].rel_err);
            add_exact(x, "kl", L->sens[i].kl);
            if (isfinite(L->sens[i].dnll)) add_exact(x, "dnll", L->sens[i].dnll);
            cJSON_AddItemToArray(pts, x);
        }
        cJSON *es = cJSON_AddArrayToObject(o, "settings");
        for (int e = 0; e < L->n_entries; e++) {
            const measure_entry *me = &L->entries[e];
            cJSON *x = setting_json(&me->s);
            cJSON_AddNumberToObject(x, "storage_bits", (double)me->storage_bits);
            add_exact(x, "rel_err", me->rel_err);
            add_exact(x, "loss", me->loss);
            cJSON_AddItemToArray(es, x);
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = fs_write_file(path, text, strlen(text));
    free(text);
    return rc;
}

static int get_num(const cJSON *o, const char *k, double lo, double hi, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi)) return -1;
    *v = x->valuedouble;
    return 0;
}
static int get_bool(const cJSON *o, const char *k, int *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsBool(x)) return -1;
    *v = cJSON_IsTrue(x);
    return 0;
}
static int get_str(const cJSON *o, const char *k, char *dst, size_t n) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(x) || strlen(x->valuestring) >= n) return -1;
    strcpy(dst, x->valuestring);
    return 0;
}
static int get_setting(const cJSON *o, qsetting *s) {
    double b, g;
    if (get_num(o, "bits", 2, 8, &b) || quant_check_bits((int)b) != 0 || get_num(o, "group_size", -1, INT_MAX, &g) ||
        g == 0 || get_bool(o, "sym", &s->sym)) {
        gptq_clear_error();
        return -1;
    }
    s->bits = (int)b, s->group_size = (int)g;
    return 0;
}

int measurement_load(measurement *ms, const char *path) {
    memset(ms, 0, sizeof *ms);
    char *text = fs_read_all(path, NULL);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return gptq_fail("%s: not valid JSON", path);
    const char *bad = NULL;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(root, "key");
    const cJSON *menu = cJSON_GetObjectItemCaseSensitive(root, "menu");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    double v;
    const int v2 = cJSON_IsString(fmt) && strcmp(fmt->valuestring, MEASURE_FORMAT_V2) == 0;
    if (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, MEASURE_FORMAT) != 0 && !v2))
        bad = "\"format\" is not " MEASURE_FORMAT " (nor the older " MEASURE_FORMAT_V2 ")";
    else if (!cJSON_IsObject(key) || get_str(key, "model", ms->model, sizeof ms->model) ||
             get_str(key, "config_sha256", ms->config_sha256, sizeof ms->config_sha256) ||
             get_str(key, "calib_sha256", ms->calib_sha256, sizeof ms->calib_sha256) || get_bool(key, "act_order", &ms->act_order) ||
             get_bool(key, "mse", &ms->mse))
        bad = "\"key\" lacks a field";
    else if (get_num(key, "nsamples", 1, INT_MAX, &v) || (ms->nsamples = (int)v, 0) || get_num(key, "seqlen", 1, INT_MAX, &v) ||
             (ms->seqlen = (int)v, 0) || get_num(key, "damp", 0, 1e9, &v) || (ms->damp = (float)v, 0) ||
             get_num(key, "block", 1, INT_MAX, &v) || (ms->block = (int)v, 0))
        bad = "\"key\" has a bad number";
    else if (!cJSON_IsArray(menu) || cJSON_GetArraySize(menu) < 1 || cJSON_GetArraySize(menu) > MEASURE_MAX_MENU)
        bad = "\"menu\" is not an array of 1 to 64 settings";
    else if (get_num(root, "n_layers", 1, 1 << 20, &v) || (ms->n_layers = (int)v, 0) || get_num(root, "seconds", 0, 1e12, &ms->seconds) ||
             get_num(root, "sensitivity_windows", 1, 1 << 20, &v) || (ms->sens_windows = (int)v, 0))
        bad = "\"n_layers\", \"seconds\" or \"sensitivity_windows\" is missing";
    else if (ms->sens_float_nll = NAN, cJSON_GetObjectItemCaseSensitive(root, "sensitivity_float_nll") &&
             get_num(root, "sensitivity_float_nll", 0, INFINITY, &ms->sens_float_nll))
        bad = "\"sensitivity_float_nll\" is not a number";
    else if (!cJSON_IsArray(layers))
        bad = "\"layers\" is not an array";
    if (!bad) {
        const cJSON *x;
        cJSON_ArrayForEach(x, menu) {
            if (get_setting(x, &ms->menu[ms->n_menu++])) bad = "a menu setting is malformed";
        }
    }
    if (!bad) {
        ms->n = cJSON_GetArraySize(layers);
        ms->layers = xcalloc(ms->n ? (size_t)ms->n : 1, sizeof(measure_layer));
        int k = 0;
        const cJSON *lo;
        cJSON_ArrayForEach(lo, layers) {
            measure_layer *L = &ms->layers[k++];
            const cJSON *es = cJSON_GetObjectItemCaseSensitive(lo, "settings");
            double layer, out, in;
            if (get_str(lo, "module", L->name, sizeof L->name) || get_num(lo, "layer", 0, INT_MAX, &layer) ||
                get_num(lo, "out", 1, 1e12, &out) || get_num(lo, "in", 1, 1e12, &in) || get_num(lo, "energy", 0, INFINITY, &L->energy) ||
                get_num(lo, "sensitivity", 0, INFINITY, &L->sensitivity) || get_num(lo, "sensitivity_kl", 0, INFINITY, &L->sens_kl) ||
                get_setting(cJSON_GetObjectItemCaseSensitive(lo, "sensitivity_setting"), &L->sens_ref) || !cJSON_IsArray(es)) {
                bad = "a layer lacks module, layer, out, in, energy, sensitivity or settings";
                break;
            }
            const cJSON *pts = cJSON_GetObjectItemCaseSensitive(lo, "sensitivity_points");
            if (!v2 && (!cJSON_IsArray(pts) || cJSON_GetArraySize(pts) != MEASURE_SENS_REFS)) {
                bad = "a layer lacks its sensitivity_points";
                break;
            }
            const cJSON *po;
            if (!v2) cJSON_ArrayForEach(po, pts) {
                    measure_sens *ps = &L->sens[L->n_sens++];
                    if (get_setting(po, &ps->s) || get_num(po, "rel_err", 0, INFINITY, &ps->rel_err) ||
                        get_num(po, "kl", 0, INFINITY, &ps->kl))
                        bad = "a sensitivity point is malformed";
                    /* optional: files measured before ΔNLL was recorded lack it */
                    ps->dnll = NAN;
                    if (cJSON_GetObjectItemCaseSensitive(po, "dnll") && get_num(po, "dnll", -INFINITY, INFINITY, &ps->dnll))
                        bad = "a sensitivity point's dnll is not a number";
                }
            if (bad) break;
            L->layer = (int)layer, L->out = (int64_t)out, L->in = (int64_t)in;
            L->id = -1;
            for (int j = 0; j < LIN_COUNT; j++) {
                const char *nm = llama_linear_name((llama_linear_id)j);
                size_t a = strlen(L->name), b = strlen(nm);
                if (a > b && strcmp(L->name + a - b, nm) == 0) L->id = j;
            }
            L->n_entries = cJSON_GetArraySize(es);
            L->entries = xcalloc(L->n_entries ? (size_t)L->n_entries : 1, sizeof(measure_entry));
            int e = 0;
            const cJSON *eo;
            cJSON_ArrayForEach(eo, es) {
                measure_entry *me = &L->entries[e++];
                double sb;
                if (get_setting(eo, &me->s) || get_num(eo, "storage_bits", 0, 9e15, &sb) ||
                    get_num(eo, "rel_err", 0, INFINITY, &me->rel_err) || get_num(eo, "loss", 0, INFINITY, &me->loss)) {
                    bad = "a layer's setting is malformed";
                    break;
                }
                me->storage_bits = (int64_t)sb;
            }
            if (bad) break;
            L->measured = 1;
        }
    }
    cJSON_Delete(root);
    if (bad) {
        measurement_free(ms);
        return gptq_fail("%s: not a measurement file: %s", path, bad);
    }
    return 0;
}

/* ---------------- the error model ---------------- */

/* a perturbation's KL is second order when small; a slope outside [1, 3] beyond the
 * measured points is more likely noise than curvature */
static double clamp_slope(double p) { return p < 1 ? 1 : p > 3 ? 3 : p; }

double measure_predicted_kl(const measure_layer *L, double r) {
    /* the usable points in log space, by rel_err ascending */
    double x[MEASURE_SENS_REFS], y[MEASURE_SENS_REFS];
    int n = 0;
    for (int i = 0; i < L->n_sens; i++) {
        const measure_sens *p = &L->sens[i];
        if (!(p->kl > 0) || !(p->rel_err > 0) || !isfinite(p->kl)) continue;
        double lx = log(p->rel_err), ly = log(p->kl);
        int j = n, dup = 0;
        for (int k = 0; k < n; k++) dup |= fabs(x[k] - lx) < 1e-9;
        if (dup) continue;
        while (j > 0 && x[j - 1] > lx) x[j] = x[j - 1], y[j] = y[j - 1], j--;
        x[j] = lx, y[j] = ly, n++;
    }
    if (n < 2) return L->sensitivity * r * r;
    if (!(r > 0)) return 0;
    /* KL grows with the error: a point below an earlier one (noise) is raised to it */
    for (int i = 1; i < n; i++) y[i] = y[i] > y[i - 1] ? y[i] : y[i - 1];
    const double lr = log(r);
    if (lr <= x[0]) return exp(y[0] + clamp_slope((y[1] - y[0]) / (x[1] - x[0])) * (lr - x[0]));
    if (lr >= x[n - 1]) return exp(y[n - 1] + clamp_slope((y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2])) * (lr - x[n - 1]));
    int i = 0;
    while (lr > x[i + 1]) i++;
    return exp(y[i] + (y[i + 1] - y[i]) * (lr - x[i]) / (x[i + 1] - x[i]));
}

double measure_nll_sensitivity(const measure_layer *L) {
    if (L->n_sens < 1) return NAN;
    double num = 0, den = 0;
    for (int i = 0; i < L->n_sens; i++) {
        const measure_sens *p = &L->sens[i];
        if (!isfinite(p->dnll)) return NAN;
        const double r2 = p->rel_err * p->rel_err;
        num += p->dnll * r2, den += r2 * r2;
    }
    const double fit = den > 0 ? num / den : 0, floor_ = MEASURE_NLL_FLOOR * L->sensitivity;
    return fit > floor_ ? fit : floor_;
}

/* ---------------- measuring ---------------- */

typedef struct {
    measurement *ms;
    const char *save;
    progress pg;
    int done;
    llama_model *m;
    const calib_set *calib;
    klwin kw;          /* the sensitivity windows: the float model's outputs and block inputs */
    double t0, s0;     /* start of this run, seconds measured before it */
} measure_ctx;

/* A reference setting of the sensitivity: `bits` g128 asym, else the nearest that fits. */
static int sens_entry(const measure_layer *L, int bits) {
    int best = 0, best_score = 1 << 30;
    for (int e = 0; e < L->n_entries; e++) {
        const qsetting *s = &L->entries[e].s;
        int score = abs(s->bits - bits) * 1000 + (s->group_size == 128 ? 0 : s->group_size < 0 ? 500 : abs(s->group_size - 128)) + s->sym;
        if (score < best_score) best_score = score, best = e;
    }
    return best;
}

static int m_wants(void *c, int k) {
    const measurement *ms = ((measure_ctx *)c)->ms;
    return k < ms->n && !ms->layers[k].measured && ms->layers[k].n_entries > 0;
}

static int m_run(void *c, int k, const linear *l, const float *h) {
    measure_ctx *mc = c;
    measurement *ms = mc->ms;
    measure_layer *L = &ms->layers[k];
    double t0 = now_seconds();
    const int64_t out = l->out, in = l->in;
    float *w = xaligned_alloc(sizeof(float) * (size_t)(out * in));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < out; r++) linear_row_f32(l, r, w + r * in);
    L->energy = hessian_quad(w, out, in, h);
    gptq_hinv hv;
    if (gptq_prepare(h, in, ms->act_order, ms->damp, &hv) != 0) {
        free(w);
        return -1;
    }
    if (hv.damp_retries) gptq_warn("%s: Hessian not positive definite; damping raised to %g", L->name, hv.damp_used);
    int failed = -1;
    char msg[512] = "";
    /* one setting per thread; each runs serially (OpenBLAS stays on one thread inside a parallel region) */
#pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < L->n_entries; e++) {
        measure_entry *me = &L->entries[e];
        gptq_params gp = gptq_default_params();
        gp.bits = me->s.bits, gp.group_size = me->s.group_size, gp.sym = me->s.sym;
        gp.act_order = ms->act_order, gp.mse = ms->mse, gp.damp = ms->damp, gp.block_size = ms->block;
        gptq_result res;
        if (gptq_quantize_prepared(w, h, out, &hv, &gp, &res) != 0) {
#pragma omp critical(measure_fail)
            if (failed < 0) failed = e, snprintf(msg, sizeof msg, "%s", gptq_last_error());
            continue;
        }
        me->loss = res.loss;
        me->rel_err = L->energy > 0 ? sqrt(res.err_sq / L->energy) : (res.err_sq == 0 ? 0.0 : INFINITY);
        gptq_result_free(&res);
    }
    /* sensitivity: this Linear alone at each reference setting, KL of the whole model's output */
    static const int ref_bits[MEASURE_SENS_REFS] = MEASURE_SENS_BITS;
    L->n_sens = 0;
    for (int ref = 0; ref < MEASURE_SENS_REFS && failed < 0; ref++) {
        int re = sens_entry(L, ref_bits[ref]);
        measure_sens *ps = &L->sens[L->n_sens++];
        ps->s = L->entries[re].s, ps->rel_err = L->entries[re].rel_err;
        int same = -1; /* a shape that fits few settings may map two references to one */
        for (int i = 0; i < ref; i++)
            if (L->sens[i].s.bits == ps->s.bits && L->sens[i].s.group_size == ps->s.group_size && L->sens[i].s.sym == ps->s.sym)
                same = i;
        if (same >= 0) {
            ps->kl = L->sens[same].kl, ps->dnll = L->sens[same].dnll;
            continue;
        }
        gptq_params gp = gptq_default_params();
        gp.bits = ps->s.bits, gp.group_size = ps->s.group_size, gp.sym = ps->s.sym;
        gp.act_order = ms->act_order, gp.mse = ms->mse, gp.damp = ms->damp, gp.block_size = ms->block;
        gptq_result res;
        if (gptq_quantize_prepared(w, h, out, &hv, &gp, &res) != 0) {
            failed = re, snprintf(msg, sizeof msg, "%s", gptq_last_error());
            break;
        }
        linear *lm = &mc->m->layers[L->layer].lin[L->id];
        const void *w0 = lm->w;
        gptq_dtype d0 = lm->dtype;
        void *o0 = lm->owned;
        lm->owned = NULL;
        linear_set_f32(lm, res.q.wq);
        res.q.wq = NULL;
        double dnll = 0, kl = klwin_run(&mc->kw, KLWIN_KL, L->layer, &dnll);
        free(lm->owned);
        lm->owned = o0, lm->w = w0, lm->dtype = d0;
        gptq_result_free(&res);
        ps->kl = kl > 0 ? kl : 0;
        ps->dnll = dnll; /* may be negative: kept as measured, measure_nll_sensitivity decides */
    }
    if (failed < 0) { /* the first reference (3-bit) also gives the quadratic model's scale */
        double r = L->sens[0].rel_err;
        L->sens_ref = L->sens[0].s;
        L->sens_kl = L->sens[0].kl;
        L->sensitivity = r > 0 ? L->sens_kl / (r * r) : 0;
    }
    gptq_hinv_free(&hv);
    free(w);
    if (failed >= 0) {
        const qsetting *s = &L->entries[failed].s;
        return gptq_fail("w%d g%d %s: %s", s->bits, s->group_size, s->sym ? "sym" : "asym", msg);
    }
    for (int e = 0; e < L->n_entries; e++)
        if (!isfinite(L->entries[e].rel_err)) return gptq_fail("the output energy is zero: nothing to measure against");
    L->measured = 1;
    (void)t0;
    ms->seconds = mc->s0 + (now_seconds() - mc->t0);
    ms->measured_now++;
    progress_update(&mc->pg, ++mc->done);
    if (mc->save) return measurement_save(ms, mc->save);
    return 0;
}

quant_options measurement_options(const measurement *ms, quant_measure_hook *hook) {
    quant_options o = {0};
    o.method = QMETHOD_GPTQ;
    o.gp = gptq_default_params();
    o.gp.act_order = ms->act_order, o.gp.damp = ms->damp, o.gp.block_size = ms->block, o.gp.mse = ms->mse;
    o.measure = hook;
    return o;
}

int measure_model(llama_model *m, const calib_set *calib, measurement *ms, const char *save_path) {
    measure_ctx mc = {ms, save_path, {0}, 0, m, calib, {0}, 0, 0};
    int todo = 0;
    for (int k = 0; k < ms->n; k++) todo += m_wants(&mc, k);
    ms->measured_now = 0;
    if (todo == 0) return 0;
    double t0 = now_seconds(), s0 = ms->seconds;
    mc.t0 = t0, mc.s0 = s0;
    quant_measure_hook hook = {m_wants, m_run, &mc};
    quant_options o = measurement_options(ms, &hook);
    /* the float model's next-token distributions on the first windows */
    const size_t per = klwin_bytes_per_window(m, calib->seqlen);
    int nw = (int)(SENS_BUDGET / per);
    if (nw > SENS_MAX_WINDOWS) nw = SENS_MAX_WINDOWS;
    if (nw > calib->n) nw = calib->n;
    if (nw < 1) nw = 1;
    if (ms->sens_windows && ms->sens_windows != nw)
        return gptq_fail("measurement: the file's sensitivities use %d windows, this run %d", ms->sens_windows, nw);
    ms->sens_windows = nw;
    for (int w = 0; w < nw * calib->seqlen; w++)
        if (calib->ids[w] < 0 || calib->ids[w] >= m->cfg.vocab_size)
            return gptq_fail("calibration token id %d is outside the vocabulary (%d)", calib->ids[w], m->cfg.vocab_size);
    klwin_init(&mc.kw, m, calib->ids, nw, calib->seqlen);
    klwin_run(&mc.kw, KLWIN_REFERENCE, 0, NULL);
    ms->sens_float_nll = mc.kw.ref_nll;
    quant_result r;
    progress_start(&mc.pg, "measure: layer", todo);
    int rc = quantize_model(m, calib, &o, &r);
    klwin_free(&mc.kw);
    progress_end(&mc.pg);
    if (rc == 0) quant_result_free(&r);
    /* count the whole pass (forward passes and Hessians too), not only the menu runs */
    ms->seconds = s0 + (now_seconds() - t0);
    if (rc == 0 && save_path) rc = measurement_save(ms, save_path);
    return rc;
}
