/* The per-layer quantization report: layers.csv, layers.json and error.svg (relative
 * output error by block, one line per sub-layer kind) in a directory; bits.svg and
 * settings.md (the setting of every Linear: bits, group size, sym/asym), and for mixed
 * precision predicted_vs_measured.svg (the measurement pass's error for the chosen
 * setting against the error the sequential quantization measured). */
#ifndef GPTQ_QUANT_REPORT_H
#define GPTQ_QUANT_REPORT_H

#include "quant/pipeline.h"

/* `settings` is a JSON object text describing the run (embedded in layers.json). */
int quant_report_write(const quant_result *r, int n_layers, const char *settings_json, const char *dir);

#endif
