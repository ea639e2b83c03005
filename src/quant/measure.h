/* The measurement pass for mixed precision (EXL2-style): every Linear is quantized with
 * each setting of a menu (bits × group size × sym/asym, act-order as the run says) by
 * GPTQ on its own calibration Hessian, and the relative output error
 * ‖(W−Ŵ)X‖_F/‖WX‖_F, the GPTQ loss and the exact storage bits are recorded.  The
 * allocator (quant/alloc.h) then picks one setting per Linear for any bits-per-weight
 * target from these numbers alone, so one measurement serves every target.
 *
 * Inputs: the calibration activations come from the FLOAT model (nothing is quantized
 * during the measurement).  exllamav2 measures on a model quantized at a reference
 * setting; float inputs make the numbers independent of any such setting, so they mean
 * the same for a 2.5-bit and a 4.5-bit target, and every block needs one pass.  The final
 * quantization is still sequential (each Hessian from the already quantized layers
 * before it), so the measured error there differs a little from the prediction; the
 * report shows both.
 *
 * Cost: one Hessian per Linear group as in quantization, and per Linear one GPTQ
 * preparation (act-order permutation, damping, Cholesky of H⁻¹: the same for every
 * setting) shared by all menu entries; the entries then run side by side, one per
 * thread.  The relative error needs no extra product: tr(ΔW H ΔWᵀ) comes from the GPTQ
 * loss (gptq.h), and tr(W H Wᵀ) is computed once per Linear.
 *
 * Sensitivity: equal relative errors do not cost the model equally (an error in layer 0's
 * MLP reaches every later block).  So per Linear the pass also measures what its error
 * does to the model's output: Linear k alone is replaced by its GPTQ quantization at a
 * reference setting (3-bit, group 128, asym where it fits) and the mean KL divergence of
 * the next-token distributions from the float model's is computed on a few calibration
 * windows; sensitivity = KL / rel_err², the KL per unit squared relative error (second
 * order: KL grows with the square of a small perturbation).  The allocator minimizes the
 * predicted KL, Σ sensitivity·rel_err² (mixed.h).  Whether KL really is quadratic over
 * the 2..8-bit range is checked by the same KL measured at 2-bit and 4-bit g128 too
 * (three reference points in all): measure_predicted_kl reads any setting's KL off the
 * piecewise power law through them (linear in log(rel_err)-log(KL) between the points,
 * beyond them the nearest segment's slope clamped to [1, 3]), the allocator's kl-pow
 * objective.  On llama-bpe-26m the slopes came out 1.6-2.2 (docs/QUALITY.md).  Three
 * forward passes over those windows per Linear.
 *
 * The same passes also give the increase of the mean NLL of the windows' actual next
 * tokens (ΔNLL; the calibration text's, against the float model's own NLL): KL measures
 * the divergence from the float model, perplexity the NLL of the data, and the two differ
 * by a first-order term (the direction of the change).  measure_nll_sensitivity turns the
 * three ΔNLL points into a quadratic coefficient for the allocator's nll objective.
 * Files measured before ΔNLL was recorded (format 3 without "dnll") still load; their
 * points carry NAN there and the nll objective refuses them.
 *
 * File: a JSON document (written atomically after every Linear, so an interrupted
 * measurement resumes where it stopped) with the key it was measured under — model
 * directory and the sha256 of its config.json, the sha256 of the calibration token ids,
 * damping, act-order, MSE grids, block size — the menu, and per Linear the energy and
 * one record per setting.  A file with another key is refused rather than reused. */
#ifndef GPTQ_QUANT_MEASURE_H
#define GPTQ_QUANT_MEASURE_H

#include <stdint.h>

#include "model/llama.h"
#include "quant/alloc.h"
#include "quant/pipeline.h"
#include "text/calib.h"

#define MEASURE_MAX_MENU 64
/* the bit widths of the KL reference settings (group 128 asym, else the nearest fit) */
#define MEASURE_SENS_REFS 3
#define MEASURE_SENS_BITS {3, 2, 4}

/* One reference point of a Linear's KL model: the model's output KL with this Linear
 * alone quantized at setting s, whose relative error is rel_err. */
typedef struct {
    qsetting s;
    double rel_err;
    double kl;
    double dnll;    /* increase of the mean NLL of the windows' actual next tokens (NAN: not measured) */
} measure_sens;

typedef struct {
    qsetting s;
    int64_t storage_bits; /* qweight + qzeros + scales + g_idx, exact */
    double rel_err;       /* ‖(W−Ŵ)X‖_F / ‖WX‖_F on the calibration set */
    double loss;          /* GPTQ loss */
} measure_entry;

typedef struct {
    char name[64];            /* "model.layers.3.mlp.down_proj" */
    int layer, id;            /* block, LIN_* */
    int64_t out, in;
    int measured;             /* entries below are valid */
    double energy;            /* tr(W H Wᵀ) */
    double sensitivity;       /* mean KL per unit squared relative error (see above) */
    double sens_kl;           /* the KL measured at the reference setting */
    qsetting sens_ref;        /* that setting */
    int n_sens;               /* reference points of the KL model (0: a format-2 file) */
    measure_sens sens[MEASURE_SENS_REFS]; /* (n_sens) in the order of MEASURE_SENS_BITS */
    int n_entries;
    measure_entry *entries;   /* (n_entries) the menu settings this Linear can take */
} measure_layer;

typedef struct {
    /* key */
    char model[1024];
    char config_sha256[65];
    char calib_sha256[65];
    int nsamples, seqlen;
    float damp;
    int act_order, mse, block;
    /* menu */
    int n_menu;
    qsetting menu[MEASURE_MAX_MENU];
    /* results */
    int n_layers;             /* model blocks */
    int n;                    /* n_layers * LIN_COUNT */
    measure_layer *layers;    /* (n) [layer*LIN_COUNT + LIN_*] */
    double seconds;           /* measuring time, summed over resumed runs */
    int measured_now;         /* Linears measured by the last measure_model call */
    int sens_windows;         /* calibration windows the sensitivities use (the first ones) */
    double sens_float_nll;    /* the float model's mean NLL of those windows' next tokens (NAN: not measured) */
} measurement;

/* bits {2,3,4,8} × group {32,64,128,-1}, asym (× sym too if with_sym).  Asym by default:
 * at equal storage (the v1 format stores zero points either way) the symmetric grid was
 * never better, in any Linear of llama-bpe-26m at any bits/group, and it doubles the pass. */
void measure_default_menu(measurement *ms, int with_sym);
/* Can a (out, in) Linear take setting s in a checkpoint: the format packs it, and the
 * group divides the width (and is smaller than it; a group >= in is the per-row grid). */
int measure_setting_fits(int64_t out, int64_t in, const qsetting *s);

/* Sets the key from the model, calibration and options, and the layer table (names,
 * shapes, the menu entries that fit) with nothing measured.  The menu must be set. */
int measurement_init(measurement *ms, const llama_model *m, const char *model_dir, const calib_set *calib, float damp,
                     int act_order, int mse, int block);
/* Copies the measured layers of `from` into ms when their keys agree (-1 + error naming
 * `what` and the difference otherwise); a layer counts only if it has every menu entry of
 * ms. */
int measurement_adopt(measurement *ms, const measurement *from, const char *what);
void measurement_free(measurement *ms);

int measurement_save(const measurement *ms, const char *path);
/* Reads a measurement file.  -1 + error naming the file on bad JSON or fields. */
int measurement_load(measurement *ms, const char *path);

/* The predicted mean KL of the model's output when Linear L alone has relative output
 * error r: the piecewise power law through its reference points (see above; points with
 * no positive KL or a repeated rel_err are left out), or sensitivity·r² with fewer than
 * two usable points (a format-2 file, a Linear with one fitting setting). */
double measure_predicted_kl(const measure_layer *L, double r);

/* The nll objective's coefficient: ΔNLL per unit squared relative error, the least-squares
 * fit through the origin of the points' ΔNLL against rel_err² (Σ d·r² / Σ r⁴: all three
 * points, weighted toward the largest errors, where ΔNLL stands furthest above its
 * sampling noise; ΔNLL of a few windows is noisy and can come out negative), floored at
 * MEASURE_NLL_FLOOR × the KL sensitivity so that no Linear looks free.  NAN if a point
 * lacks ΔNLL (an older file). */
#define MEASURE_NLL_FLOOR 0.1
double measure_nll_sensitivity(const measure_layer *L);

/* GPTQ options in measurement mode (hook sees every Linear, nothing is quantized) with the
 * damping, act-order, MSE grids and block of ms's key. */
quant_options measurement_options(const measurement *ms, quant_measure_hook *hook);

/* Measures every Linear not yet measured (saving to save_path after each, if given). */
int measure_model(llama_model *m, const calib_set *calib, measurement *ms, const char *save_path);

#endif
