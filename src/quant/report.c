#include "quant/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"


/* A growing string buffer with printf. */
typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < room) {
            b->len += n;
            return;
        }
        b->cap = (b->cap + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
}

static const char *const colors[LIN_COUNT] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"};

static char *svg_plot(const quant_result *r, int n_layers) {
    const int W = 760, H = 420, L = 70, R = 170, T = 40, B = 50;
    double ymax = 0;
    for (int k = 0; k < n_layers * LIN_COUNT; k++)
        if (r->rows[k].quantized && isfinite(r->rows[k].rel_err) && r->rows[k].rel_err > ymax) ymax = r->rows[k].rel_err;
    int use_rmse = ymax == 0; /* RTN has no calibration error: plot weight RMSE instead */
    if (use_rmse)
        for (int k = 0; k < n_layers * LIN_COUNT; k++)
            if (r->rows[k].quantized && r->rows[k].weight_rmse > ymax) ymax = r->rows[k].weight_rmse;
    if (ymax <= 0) ymax = 1;
    ymax *= 1.1;
    sbuf b = {0};
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    sb_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    sb_printf(&b, "<text x=\"%d\" y=\"22\" font-size=\"15\">%s by layer and sub-layer</text>\n", L,
              use_rmse ? "Weight RMSE (RTN)" : "Relative output error ||(W-Q)X|| / ||WX||");
    int pw = W - L - R, ph = H - T - B;
    sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", L, T, pw, ph);
    for (int i = 0; i <= 5; i++) {
        double v = ymax * i / 5;
        int y = T + ph - (int)(ph * i / 5.0);
        sb_printf(&b, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n",
                  L, L + pw, y, y, L - 6, y + 4, v);
    }
    double dx = n_layers > 1 ? (double)pw / (n_layers - 1) : 0;
    for (int l = 0; l < n_layers; l++)
        sb_printf(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", L + (n_layers > 1 ? l * dx : pw / 2.0),
                  T + ph + 18, l);
    sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">layer</text>\n", L + pw / 2, H - 10);
    for (int j = 0; j < LIN_COUNT; j++) {
        sbuf pts = {0};
        for (int l = 0; l < n_layers; l++) {
            const quant_layer_report *q = &r->rows[l * LIN_COUNT + j];
            if (!q->quantized) continue;
            double v = use_rmse ? q->weight_rmse : q->rel_err;
            if (!isfinite(v)) continue;
            double x = L + (n_layers > 1 ? l * dx : pw / 2.0), y = T + ph - ph * v / ymax;
            sb_printf(&pts, "%.1f,%.1f ", x, y);
            sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y, colors[j]);
        }
        if (pts.s) sb_printf(&b, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"/>\n", pts.s, colors[j]);
        free(pts.s);
        int ly = T + 14 + 18 * j;
        sb_printf(&b, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                  L + pw + 12, L + pw + 32, ly, ly, colors[j], L + pw + 38, ly + 4, llama_linear_name((llama_linear_id)j));
    }
    sb_printf(&b, "</svg>\n");
    return b.s;
}

static const char *bits_color(int bits) {
    switch (bits) {
    case 2: return "#d73027";
    case 3: return "#fc8d59";
    case 4: return "#91bfdb";
    case 8: return "#4575b4";
    default: return "#cccccc";
    }
}

static void setting_label(char *buf, size_t n, const quant_layer_report *q) {
    if (!q->quantized) snprintf(buf, n, "float");
    else if (q->group_size > 0) snprintf(buf, n, "w%d g%d %s", q->bits, q->group_size, q->sym ? "sym" : "asym");
    else snprintf(buf, n, "w%d g-1 %s", q->bits, q->sym ? "sym" : "asym");
}

/* The chosen setting of every Linear: one row per sub-layer kind, one column per block. */
static char *svg_bits(const quant_result *r, int n_layers) {
    const int cw = 78, ch = 34, L = 130, T = 50, R = 20, B = 60;
    const int W = L + cw * n_layers + R, H = T + ch * LIN_COUNT + B;
    sbuf b = {0};
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H);
    sb_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    sb_printf(&b, "<text x=\"%d\" y=\"22\" font-size=\"15\">Bits and group size per Linear (%.3f bpw overall)</text>\n", L, r->bpw);
    for (int l = 0; l < n_layers; l++)
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">layer %d</text>\n", L + l * cw + cw / 2, T - 6, l);
    for (int j = 0; j < LIN_COUNT; j++) {
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", L - 6, T + j * ch + ch / 2 + 4,
                  llama_linear_name((llama_linear_id)j));
        for (int l = 0; l < n_layers; l++) {
            const quant_layer_report *q = &r->rows[l * LIN_COUNT + j];
            int x = L + l * cw, y = T + j * ch;
            sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"white\"/>\n", x, y, cw, ch,
                      q->quantized ? bits_color(q->bits) : "#eeeeee");
            char lab[48];
            setting_label(lab, sizeof lab, q);
            sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x + cw / 2, y + ch / 2 + 4, lab);
        }
    }
    int ly = T + ch * LIN_COUNT + 24;
    static const int legend[] = {2, 3, 4, 8};
    for (int i = 0; i < 4; i++)
        sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%d-bit</text>\n",
                  L + i * 80, ly, bits_color(legend[i]), L + i * 80 + 18, ly + 11, legend[i]);
    sb_printf(&b, "</svg>\n");
    return b.s;
}

/* Predicted (measurement pass) against measured (the sequential quantization) relative
 * output error, log-log, one point per Linear; NULL if nothing was predicted. */
static char *svg_predicted(const quant_result *r) {
    double lo = INFINITY, hi = 0;
    for (int k = 0; k < r->n_rows; k++) {
        const quant_layer_report *q = &r->rows[k];
        if (!q->quantized || !(q->predicted_rel_err > 0) || !(q->rel_err > 0)) continue;
        double a = fmin(q->predicted_rel_err, q->rel_err), c = fmax(q->predicted_rel_err, q->rel_err);
        lo = fmin(lo, a), hi = fmax(hi, c);
    }
    if (!(hi > 0)) return NULL;
    lo = log10(lo) - 0.05, hi = log10(hi) + 0.05;
    const int W = 560, H = 520, L = 70, R = 150, T = 40, B = 50, pw = W - L - R, ph = H - T - B;
    sbuf b = {0};
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    sb_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    sb_printf(&b, "<text x=\"%d\" y=\"22\" font-size=\"15\">Relative output error: predicted vs measured</text>\n", L);
    sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", L, T, pw, ph);
    sb_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n", L, T + ph, L + pw, T);
    for (int i = 0; i <= 4; i++) {
        double v = lo + (hi - lo) * i / 4;
        int x = L + (int)(pw * i / 4.0), y = T + ph - (int)(ph * i / 4.0);
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n", x, T + ph + 16, pow(10, v));
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n", L - 6, y + 4, pow(10, v));
    }
    sb_printf(&b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">predicted (measurement pass, float inputs)</text>\n", L + pw / 2, H - 12);
    sb_printf(&b, "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">measured (sequential quantization)</text>\n",
              T + ph / 2, T + ph / 2);
    for (int k = 0; k < r->n_rows; k++) {
        const quant_layer_report *q = &r->rows[k];
        if (!q->quantized || !(q->predicted_rel_err > 0) || !(q->rel_err > 0)) continue;
        double x = L + pw * (log10(q->predicted_rel_err) - lo) / (hi - lo), y = T + ph - ph * (log10(q->rel_err) - lo) / (hi - lo);
        sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s</title></circle>\n", x, y,
                  q->layer < 0 ? "#000" : colors[q->id], q->name);
    }
    for (int j = 0; j < LIN_COUNT; j++) {
        int ly = T + 14 + 18 * j;
        sb_printf(&b, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n", L + pw + 16, ly,
                  colors[j], L + pw + 26, ly + 4, llama_linear_name((llama_linear_id)j));
    }
    sb_printf(&b, "</svg>\n");
    return b.s;
}

/* The chosen settings as a markdown table (blocks × sub-layers). */
static char *md_settings(const quant_result *r, int n_layers) {
    sbuf b = {0};
    sb_printf(&b, "| layer |");
    for (int j = 0; j < LIN_COUNT; j++) sb_printf(&b, " %s |", llama_linear_name((llama_linear_id)j));
    sb_printf(&b, "\n|---|");
    for (int j = 0; j < LIN_COUNT; j++) sb_printf(&b, "---|");
    sb_printf(&b, "\n");
    for (int l = 0; l < n_layers; l++) {
        sb_printf(&b, "| %d |", l);
        for (int j = 0; j < LIN_COUNT; j++) {
            char lab[48];
            setting_label(lab, sizeof lab, &r->rows[l * LIN_COUNT + j]);
            sb_printf(&b, " %s |", lab);
        }
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "\n%.4f bits per weight over %lld quantized parameters.\n", r->bpw, (long long)r->quantized_params);
    return b.s;
}

int quant_report_write(const quant_result *r, int n_layers, const char *settings_json, const char *dir) {
    if (fs_mkdirs(dir) != 0) return -1;
    sbuf csv = {0};
    sb_printf(&csv, "module,layer,sublayer,out,in,quantized,bpw,gptq_loss,rel_output_error,weight_rmse,dead_inputs,damp_retries,seconds,note,bits,group_size,sym,predicted_rel_err\n");
    cJSON *root = cJSON_CreateObject();
    cJSON *settings = cJSON_Parse(settings_json ? settings_json : "{}");
    cJSON_AddItemToObject(root, "settings", settings ? settings : cJSON_CreateObject());
    cJSON_AddNumberToObject(root, "bpw", r->bpw);
    cJSON_AddNumberToObject(root, "quantized_params", (double)r->quantized_params);
    cJSON_AddNumberToObject(root, "seconds", r->seconds);
    cJSON *arr = cJSON_AddArrayToObject(root, "layers");
    for (int k = 0; k < r->n_rows; k++) {
        const quant_layer_report *q = &r->rows[k];
        if (q->out == 0) continue; /* never reached (e.g. lm_head not requested) */
        const char *sub = q->layer < 0 ? "lm_head" : llama_linear_name(q->id);
        sb_printf(&csv, "%s,%d,%s,%lld,%lld,%d,%.4f,%.6g,%.6g,%.6g,%d,%d,%.3f,\"%s\",%d,%d,%d,%.6g\n", q->name, q->layer, sub,
                  (long long)q->out, (long long)q->in, q->quantized, q->quantized ? q->bpw : 16.0, q->loss, q->rel_err,
                  q->weight_rmse, q->dead, q->damp_retries, q->seconds, q->skip_reason, q->quantized ? q->bits : 16,
                  q->quantized ? q->group_size : 0, q->sym, q->predicted_rel_err);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "module", q->name);
        cJSON_AddNumberToObject(o, "layer", q->layer);
        cJSON_AddStringToObject(o, "sublayer", sub);
        cJSON_AddNumberToObject(o, "out", (double)q->out);
        cJSON_AddNumberToObject(o, "in", (double)q->in);
        cJSON_AddBoolToObject(o, "quantized", q->quantized);
        if (q->quantized) {
            cJSON_AddNumberToObject(o, "bpw", q->bpw);
            cJSON_AddNumberToObject(o, "bits", q->bits);
            cJSON_AddNumberToObject(o, "group_size", q->group_size);
            cJSON_AddBoolToObject(o, "sym", q->sym);
            if (isfinite(q->predicted_rel_err)) cJSON_AddNumberToObject(o, "predicted_rel_output_error", q->predicted_rel_err);
            if (isfinite(q->loss)) cJSON_AddNumberToObject(o, "gptq_loss", q->loss);
            if (isfinite(q->rel_err)) cJSON_AddNumberToObject(o, "rel_output_error", q->rel_err);
            cJSON_AddNumberToObject(o, "weight_rmse", q->weight_rmse);
            cJSON_AddNumberToObject(o, "dead_inputs", q->dead);
            cJSON_AddNumberToObject(o, "damp_retries", q->damp_retries);
            cJSON_AddNumberToObject(o, "seconds", q->seconds);
        } else {
            cJSON_AddStringToObject(o, "kept_in_float_because", q->skip_reason);
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    char *svg = svg_plot(r, n_layers);
    int rc = fs_write_text(dir, "layers.csv", csv.s);
    if (rc == 0) rc = fs_write_text(dir, "layers.json", json);
    if (rc == 0) rc = fs_write_text(dir, "error.svg", svg);
    free(csv.s), free(json), free(svg);
    char *bsvg = svg_bits(r, n_layers), *md = md_settings(r, n_layers), *psvg = svg_predicted(r);
    if (rc == 0) rc = fs_write_text(dir, "bits.svg", bsvg);
    if (rc == 0) rc = fs_write_text(dir, "settings.md", md);
    if (rc == 0 && psvg) rc = fs_write_text(dir, "predicted_vs_measured.svg", psvg);
    free(bsvg), free(md), free(psvg);
    return rc;
}
