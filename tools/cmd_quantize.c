/* gptq quantize: GPTQ or RTN quantization of a model into a Hugging Face GPTQ checkpoint,
 * or (--format gguf) into a GGUF file of llama.cpp block formats. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/gguf.h"
#include "io/gguf_export.h"
#include "io/gptq_checkpoint.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "quant/calib_auto.h"
#include "quant/finite.h"
#include "quant/measure.h"
#include "quant/refine.h"
#include "quant/mixed.h"
#include "quant/gguf_quant.h"
#include "quant/pipeline.h"
#include "quant/pipeline_cuda.h"
#include "quant/resume.h"
#include "quant/report.h"
#include "text/calib.h"
#include "text/textfile.h"
#include "text/tokenizer.h"

/* Calibration windows: a text file, model-written ('auto'), or with --calib-mix a blend
 * of both (a fraction `mix` of the windows model-written). */
static int load_calib(calib_set *calib, llama_model *m, const tokenizer *tok, const char *arg, float mix, int n, int seqlen,
                      int seed) {
    if (strcmp(arg, "auto") == 0) return calib_generate(calib, m, tok, n, seqlen, (uint64_t)seed);
    if (mix <= 0) return calib_from_file(calib, tok, arg, n, seqlen, (uint64_t)seed);
    int n_model = (int)lround(mix * n), n_text = n - n_model;
    calib_set text = {0}, model = {0};
    int rc = 0;
    if (n_text > 0) rc = calib_from_file(&text, tok, arg, n_text, seqlen, (uint64_t)seed);
    if (rc == 0 && n_model > 0) rc = calib_generate(&model, m, tok, n_model, seqlen, (uint64_t)seed);
    if (rc == 0) rc = calib_concat(calib, &text, &model);
    calib_free(&text);
    calib_free(&model);
    return rc;
}

/* --target-bpw: the measurement (loaded, resumed or run) and the per-Linear plan. */
static int plan_mixed(llama_model *m, const char *model_dir, const calib_set *calib, const gptq_params *base, double target,
                      const char *heuristic, const char *mfile, mixed_objective obj, int menu_sym, int refine,
                      measurement *ms, mixed_plan *plan, double *measure_s, double *refine_s) {
    double t0 = now_seconds();
    measure_default_menu(ms, menu_sym);
    if (measurement_init(ms, m, model_dir, calib, base->damp, base->act_order, base->mse, base->block_size) != 0) return -1;
    int have_file = mfile && fs_exists(mfile);
    if (have_file) {
        measurement prev;
        if (measurement_load(&prev, mfile) != 0) return -1;
        int rc = measurement_adopt(ms, &prev, mfile);
        measurement_free(&prev);
        if (rc != 0) return -1;
        /* say so before measuring anything else */
        for (int k = 0; k < ms->n && obj == MIXED_NLL && !heuristic; k++)
            if (ms->layers[k].measured && isnan(measure_nll_sensitivity(&ms->layers[k])))
                return gptq_fail("%s: %s was measured without the NLL sensitivities (a file from before they were recorded): "
                                 "--alloc-objective nll needs a new --measurement file",
                                 mfile, ms->layers[k].name);
    }
    if (!heuristic) {
        /* an unreachable target is known from the shapes alone: say so before measuring */
        int64_t need = 0, params = 0;
        for (int k = 0; k < ms->n; k++) {
            const measure_layer *L = &ms->layers[k];
            int64_t lo = INT64_MAX;
            for (int e = 0; e < L->n_entries; e++) lo = L->entries[e].storage_bits < lo ? L->entries[e].storage_bits : lo;
            if (L->n_entries) need += lo, params += L->out * L->in;
        }
        if (params && need > (int64_t)floor(target * (double)params))
            return gptq_fail("--target-bpw %g is below the %.4f bpw of the smallest menu settings", target,
                             (double)need / (double)params);
        int had = 0;
        for (int k = 0; k < ms->n; k++) had += ms->layers[k].measured;
        if (measure_model(m, calib, ms, mfile) != 0) return -1;
        fprintf(stderr, "gptq: measurement: %d Linears measured now, %d reused%s%s (%.1f s measuring in all)\n", ms->measured_now,
                had, mfile ? " from " : "", mfile ? mfile : "", ms->seconds);
        if (mixed_plan_measured(ms, base, target, obj, plan) != 0) return -1;
        fprintf(stderr, "gptq: allocation: %.4f bpw planned for a %.4f target, predicted error %.6g (%s, %lld DP cells of %lld bits)\n",
                plan->bpw, target, plan->predicted, plan->st.exact ? "optimal" : "not proven optimal", (long long)plan->st.cells,
                (long long)plan->st.unit);
        if (refine > 0) {
            refine_stats rs;
            if (mixed_refine(m, calib, ms, base, target, refine, plan, NULL, &rs) != 0) return -1;
            for (int i = 0; i < rs.rounds; i++)
                fprintf(stderr,
                        "gptq: refine round %d: plan KL %.6g measured in context, %.6g predicted from isolated sensitivities; "
                        "in-context/isolated sensitivity min %.3f median %.3f max %.3f; %d Linears changed\n",
                        i + 1, rs.kl_plan[i], rs.pred_iso[i], rs.ratio_min[i], rs.ratio_med[i], rs.ratio_max[i], rs.changed[i]);
            fprintf(stderr,
                    "gptq: refined allocation: %.4f bpw, predicted in-context KL %.6g (%d rounds, %d forward passes, %.1f s: "
                    "Hessians %.1f s, GPTQ %.1f s, forward passes and allocation %.1f s)\n",
                    plan->bpw, plan->predicted, rs.rounds, rs.forwards, rs.seconds, rs.hessian_seconds, rs.gptq_seconds,
                    rs.seconds - rs.hessian_seconds - rs.gptq_seconds);
            *refine_s = rs.seconds;
        }
    } else {
        if (mixed_plan_llamacpp(ms, base, target, plan) != 0) return -1;
        fprintf(stderr, "gptq: llama.cpp-style plan: base w%d g%d %s, %.4f bpw for a %.4f target\n", plan->base.bits,
                plan->base.group_size, plan->base.sym ? "sym" : "asym", plan->bpw, target);
    }
    *measure_s = now_seconds() - t0;
    return 0;
}

/* --eval-kl: the mean KL(float || quantized) of the next-token distributions on each text
 * of a comma-separated list, the float model loaded afresh beside the quantized one (in
 * memory).  kl receives up to max values. */
static int eval_kl_measure(const llama_model *m, const char *model_dir, tokenizer *tok, const char *list, int ctx,
                           int windows, double *kl, int max, int *n_kl) {
    llama_model ref;
    if (llama_load_ex(&ref, model_dir, LLAMA_LOAD_DEQUANTIZE) != 0) return -1;
    char *paths = xstrdup(list), *save = NULL;
    int rc = 0;
    *n_kl = 0;
    for (char *path = strtok_r(paths, ",", &save); path && rc == 0; path = strtok_r(NULL, ",", &save)) {
        size_t len = 0;
        char *text = text_file_read(path, &len, 0);
        if (!text) {
            rc = -1;
            break;
        }
        int *ids = NULL;
        int n = tokenizer_encode(tok, text, len, 0, &ids);
        free(text);
        ppl_result pr;
        if (n < 0 || ppl_compare(m, &ref, ids, n, ctx, windows, &pr) != 0) rc = -1;
        free(ids);
        if (rc) break;
        if (*n_kl < max) kl[(*n_kl)++] = pr.kl_mean;
        printf("KL divergence from the float model (in memory): %.6f nats/token, top-1 agreement %.2f%%  (%d windows x %d tokens of %s)\n",
               pr.kl_mean, 100 * pr.top1, pr.windows, ctx, path);
    }
    free(paths);
    llama_free(&ref);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    const char *model_dir = NULL, *out = NULL, *method = "gptq", *calib_arg = "auto", *report = NULL, *eval = NULL;
    const char *dump = NULL, *format = "hf", *gtype = "q4_0", *types_from = NULL;
    int alloc_refine = 0;
    double refine_s = 0;
    const char *measurement_file = NULL, *heuristic = NULL, *objective = "kl", *device = "cpu", *eval_kl = NULL;
    float target_bpw = 0, calib_mix = 0;
    int menu_sym = 0;
    int bits = 4, group = 128, act_order = 0, no_act_order = 0, static_groups = 0, sym = 1, asym = 0, block = 128;
    int mse = 0, no_mse = 0, lm_head = 0, nsamples = 128, seqlen = 512, seed = 0, json = 0, force = 0, eval_ctx = 512, eval_windows = 0, eval_kl_windows = -1;
    int resume = 0, gpu_fp16 = 0;
    float damp = 0.01f;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STR, &model_dir, 0, -1, "model directory (Hugging Face layout)"},
        {"--out", "-o", OPT_STR, &out, 0, -1, "output directory for the GPTQ checkpoint (a .gguf file with --format gguf)"},
        {"--format", NULL, OPT_STR, &format, 0, -1, "hf (Hugging Face GPTQ checkpoint, default) or gguf (llama.cpp)"},
        {"--type", NULL, OPT_STR, &gtype, 0, -1,
         "GGUF block type: q4_0 (default) q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k; every weight, token_embd and output "
         "included (a width the type cannot hold falls back, see docs)"},
        {"--types-from", NULL, OPT_STR, &types_from, 0, -1,
         "GGUF file whose per-tensor types to use instead of --type (e.g. llama-quantize's Q4_K_S mix)"},
        {"--method", NULL, OPT_STR, &method, 0, -1, "gptq (default) or rtn"},
        {"--bits", "-b", OPT_INT, &bits, -1000, 1000, "2, 3, 4 (default) or 8"},
        {"--group", "-g", OPT_INT, &group, -1000000, 1000000, "columns per group, -1 = whole row (default 128)"},
        {"--act-order", NULL, OPT_FLAG, &act_order, 0, -1,
         "process columns by descending Hessian diagonal (default for hf; gguf needs --static-groups with it)"},
        {"--no-act-order", NULL, OPT_FLAG, &no_act_order, 0, -1, "process columns left to right"},
        {"--static-groups", NULL, OPT_FLAG, &static_groups, 0, -1, "group grids fixed before act-order (monotonic g_idx)"},
        {"--sym", NULL, OPT_FLAG, &sym, 0, -1, "symmetric grid (default)"},
        {"--asym", NULL, OPT_FLAG, &asym, 0, -1, "grid with zero points"},
        {"--mse", NULL, OPT_FLAG, &mse, 0, -1,
         "clip each group's range to the grid with the least squared error (default with --target-bpw)"},
        {"--no-mse", NULL, OPT_FLAG, &no_mse, 0, -1, "min-max grids (the reference GPTQ's; default without --target-bpw)"},
        {"--damp", NULL, OPT_FLOAT, &damp, 0, 1, "Hessian damping as a fraction of its mean diagonal (0.01)"},
        {"--block", NULL, OPT_INT, &block, 1, 1 << 16, "columns per lazy-update block (128)"},
        {"--quantize-lm-head", NULL, OPT_FLAG, &lm_head, 0, -1, "quantize lm_head too"},
        {"--calib", NULL, OPT_STR, &calib_arg, 0, -1, "calibration text (.txt, .jsonl) or 'auto' (model-written, default)"},
        {"--nsamples", NULL, OPT_INT, &nsamples, 1, 1 << 20, "calibration windows (128)"},
        {"--seqlen", NULL, OPT_INT, &seqlen, 2, 1 << 20, "tokens per calibration window (512)"},
        {"--seed", NULL, OPT_INT, &seed, 0, 2147483647, "calibration sampling seed (0)"},
        {"--report", NULL, OPT_STR, &report, 0, -1, "write per-layer errors (CSV, JSON, SVG) to this directory"},
        {"--eval", NULL, OPT_STR, &eval, 0, -1, "after quantizing, report perplexity on this text (in memory)"},
        {"--eval-ctx", NULL, OPT_INT, &eval_ctx, 2, 1 << 20, "window length for --eval (512)"},
        {"--eval-windows", NULL, OPT_INT, &eval_windows, 0, 1 << 30, "windows for --eval (0 = all)"},
        {"--eval-kl", NULL, OPT_STR, &eval_kl, 0, -1,
         "after quantizing, the mean KL divergence from the float model on these texts (comma-separated; in memory, --eval-ctx windows)"},
        {"--eval-kl-windows", NULL, OPT_INT, &eval_kl_windows, 0, 1 << 30, "windows for --eval-kl (default: --eval-windows)"},
        {"--target-bpw", NULL, OPT_FLOAT, &target_bpw, 0, 16, "mixed precision: per-Linear settings for this many bits per weight"},
        {"--measurement", NULL, OPT_STR, &measurement_file, 0, -1, "measurement JSON for --target-bpw: reused, resumed or written"},
        {"--alloc-heuristic", NULL, OPT_STR, &heuristic, 0, -1, "llama.cpp: allocate by llama.cpp's rules instead of measured error"},
        {"--alloc-objective", NULL, OPT_STR, &objective, 0, -1, "kl (predicted KL, quadratic in the relative error, from the measured 3-bit sensitivity; default), kl-pow (power law through the KLs measured at 2, 3 and 4 bits), nll (predicted increase of the calibration text's NLL, quadratic, fitted to the 2/3/4-bit points), sq or abs (sums of relative errors)"},
        {"--alloc-refine", NULL, OPT_INT, &alloc_refine, 0, REFINE_MAX_ROUNDS, "--target-bpw: rounds of in-context refinement (re-measure each Linear's sensitivity with the rest of the model quantized as planned, allocate again; default 0)"},
        {"--menu-sym", NULL, OPT_FLAG, &menu_sym, 0, -1, "--target-bpw: measure symmetric grids too (default: asym only)"},
        {"--calib-mix", NULL, OPT_FLOAT, &calib_mix, 0, 1, "fraction of the calibration windows the model writes itself (with --calib FILE)"},
        {"--dump-dequantized", NULL, OPT_STR, &dump, 0, -1, "also write the dequantized fp32 weights to this .safetensors"},
        {"--force", NULL, OPT_FLAG, &force, 0, -1, "replace an existing output directory (and discard OUT.partial)"},
        {"--resume", NULL, OPT_FLAG, &resume, 0, -1, "continue an interrupted GPTQ run from the state in OUT.partial"},
        {"--device", NULL, OPT_STR, &device, 0, -1,
         "cpu (default) or cuda: GPTQ (calibration, Hessians, the column loop) on the GPU; --block <= 128, no RTN, "
         "--format gguf, --target-bpw or --resume"},
        {"--gpu-fp16", NULL, OPT_FLAG, &gpu_fp16, 0, -1,
         "--device cuda: calibration products on fp16 operands with fp32 sums (tensor cores, ~4x faster; results "
         "drift further from the CPU's than the default fp32 products)"},
        {"--json", NULL, OPT_FLAG, &json, 0, -1, "print a JSON summary as the last line"},
        {0},
    };
    cli_command cmd = {"quantize", "--model DIR --out DIR [options]", opts, 0, {0}, 0};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model_dir) return cli_error(&cmd, "--model is required");
    if (!out && !eval && !eval_kl && !dump) return cli_error(&cmd, "give --out DIR (and/or --eval FILE to measure in memory)");
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) return cli_error(&cmd, "--bits must be 2, 3, 4 or 8, got %d", bits);
    if (group == 0 || group < -1) return cli_error(&cmd, "--group must be -1 (whole row) or a positive size, got %d", group);
    if (asym) sym = 0;
    int gguf = strcmp(format, "gguf") == 0;
    if (!gguf && strcmp(format, "hf") != 0) return cli_error(&cmd, "--format must be hf or gguf, got '%s'", format);
    int gguf_type = gguf ? ggml_type_parse(gtype) : -1;
    if (gguf && (gguf_type < 0 || ggml_traits((uint32_t)gguf_type)->block_size == 1))
        return cli_error(&cmd, "--type must be one of q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k, got '%s'", gtype);
    if (!gguf) act_order = 1; /* the HF format's default; gguf: only when asked */
    if (no_act_order) act_order = 0;
    if (gguf && act_order && !static_groups)
        return cli_error(&cmd, "--act-order with --format gguf needs --static-groups (GGUF blocks have no g_idx)");
    if (gguf && resume) return cli_error(&cmd, "--resume is not available with --format gguf");
    if (gguf_is_gguf(model_dir)) return cli_error(&cmd, "%s: quantize needs a Hugging Face model directory, not a GGUF file", model_dir);
    quant_options qo = {0};
    if (strcmp(method, "gptq") == 0) qo.method = QMETHOD_GPTQ;
    else if (strcmp(method, "rtn") == 0) qo.method = QMETHOD_RTN;
    else return cli_error(&cmd, "--method must be gptq or rtn, got '%s'", method);
    if (qo.method == QMETHOD_RTN) act_order = 0, static_groups = 0;
    int mixed = target_bpw > 0;
    if (mse && no_mse) return cli_error(&cmd, "--mse and --no-mse exclude each other");
    /* mixed precision measures and quantizes with MSE grids unless told otherwise: on PTB's
     * validation text they beat min-max grids at every target (docs/QUALITY.md); uniform
     * runs keep the reference algorithm's min-max grids unless --mse */
    if (mixed && !no_mse) mse = 1;
    mixed_objective obj = MIXED_KL;
    if (strcmp(objective, "kl") == 0) obj = MIXED_KL;
    else if (strcmp(objective, "sq") == 0) obj = MIXED_ERR_SQ;
    else if (strcmp(objective, "abs") == 0) obj = MIXED_ERR_ABS;
    else if (strcmp(objective, "kl-pow") == 0) obj = MIXED_KL_POW;
    else if (strcmp(objective, "nll") == 0) obj = MIXED_NLL;
    else return cli_error(&cmd, "--alloc-objective must be kl, kl-pow, nll, sq or abs, got '%s'", objective);
    if (!mixed && (measurement_file || heuristic)) return cli_error(&cmd, "--measurement and --alloc-heuristic go with --target-bpw");
    if (alloc_refine && (!mixed || heuristic || obj != MIXED_KL))
        return cli_error(&cmd, "--alloc-refine goes with --target-bpw and the kl objective (not --alloc-heuristic)");
    if (mixed && qo.method != QMETHOD_GPTQ) return cli_error(&cmd, "--target-bpw needs --method gptq");
    if (mixed && static_groups) return cli_error(&cmd, "--target-bpw does not take --static-groups");
    if (heuristic && strcmp(heuristic, "llama.cpp") != 0)
        return cli_error(&cmd, "--alloc-heuristic must be llama.cpp, got '%s'", heuristic);
    if (calib_mix > 0 && strcmp(calib_arg, "auto") == 0) return cli_error(&cmd, "--calib-mix needs --calib FILE");
    const int cuda = strcmp(device, "cuda") == 0;
    if (!cuda && strcmp(device, "cpu") != 0) return cli_error(&cmd, "--device must be cpu or cuda, got '%s'", device);
    if (cuda) {
        if (qo.method != QMETHOD_GPTQ) return cli_error(&cmd, "--device cuda quantizes with --method gptq only");
        if (gguf) return cli_error(&cmd, "--device cuda does not take --format gguf (GGUF block formats run on the CPU)");
        if (mixed) return cli_error(&cmd, "--device cuda does not take --target-bpw (mixed precision runs on the CPU)");
        if (resume) return cli_error(&cmd, "--device cuda does not take --resume (GPU runs keep no OUT.partial state)");
        if (block > 128) return cli_error(&cmd, "--device cuda takes --block 1..128, got %d", block);
#ifndef GPTQ_HAVE_CUDA
        return cli_error(&cmd, "--device cuda: this build has no CUDA backend (configure with -DGPTQ_CUDA=ON)");
#endif
    } else if (gpu_fp16) {
        return cli_error(&cmd, "--gpu-fp16 goes with --device cuda");
    }
    if (out && fs_exists(out) && !force) return cli_error(&cmd, "%s already exists (pass --force to replace it)", out);

#ifdef GPTQ_HAVE_CUDA
    if (cuda && quantize_cuda_available() != 0) return cli_fail();
#endif
    double t0 = now_seconds();
    llama_model m;
    if (llama_load_ex(&m, model_dir, LLAMA_LOAD_DEQUANTIZE) != 0) return cli_fail();
    if (m.cfg.quant.present) {
        llama_free(&m);
        return cli_error(&cmd, "%s is already a GPTQ checkpoint", model_dir);
    }
    if (st_check_finite(&m.st) != 0) { /* before calibration runs the model */
        llama_free(&m);
        return cli_fail();
    }
    tokenizer *tok = tokenizer_load(model_dir);
    calib_set calib = {0};
    quant_result res = {0};
    measurement ms = {0};
    mixed_plan plan = {0};
    double measure_s = 0;
    gguf_quant gq = {0};
    gguf_file tf = {0};
    char *eval_text = NULL;
    size_t eval_len = 0;
    quant_resume *rs = NULL;
    if (!tok) {
        rc = cli_fail();
        goto out;
    }
    /* GPTQ into a checkpoint keeps its state in OUT.partial after every block (RTN takes seconds);
     * not for GGUF output, whose blocks live in memory until the file is written */
    if (out && !gguf && qo.method == QMETHOD_GPTQ && !cuda) {
        char id[1024], *cfg = fs_join(model_dir, "config.json");
        snprintf(id, sizeof id,
                 "bits %d group %d act_order %d static_groups %d sym %d mse %d damp %.9g block %d lm_head %d calib %s "
                 "nsamples %d seqlen %d seed %d",
                 bits, group, act_order, static_groups, sym, mse, damp, block, lm_head, calib_arg, nsamples, seqlen, seed);
        const char *files[3] = {cfg, strcmp(calib_arg, "auto") ? calib_arg : NULL, NULL};
        rs = quant_resume_open(out, id, files, &m.st, m.cfg.n_layers, resume, force);
        free(cfg);
        if (!rs) {
            rc = cli_fail();
            goto out;
        }
        if (quant_resume_done(rs) > 0 && (eval || eval_kl || dump)) {
            rc = cli_error(&cmd, "--eval and --dump-dequantized need every block in memory: not with a resumed run");
            goto out;
        }
        if (quant_resume_done(rs) > 0)
            fprintf(stderr, "gptq: resuming after block %d of %d\n", quant_resume_done(rs), m.cfg.n_layers);
        quant_resume_catch_signals(rs);
        qo.hooks = quant_resume_hooks(rs);
    }
    if (eval && !(eval_text = text_file_read(eval, &eval_len, 0))) {
        rc = cli_fail();
        goto out;
    }
    if (qo.method == QMETHOD_GPTQ && quant_resume_done(rs) > 0 && !mixed) {
        /* the restored block inputs replace the calibration windows */
        calib.n = nsamples, calib.seqlen = seqlen;
    } else if (qo.method == QMETHOD_GPTQ) {
        /* (a mixed-precision plan needs the windows even when resuming: they key its measurement) */
        if (load_calib(&calib, &m, tok, calib_arg, calib_mix, nsamples, seqlen, seed) != 0) {
            rc = cli_fail();
            goto out;
        }
    }
    qo.gp = gptq_default_params();
    qo.gp.bits = bits, qo.gp.group_size = group, qo.gp.sym = sym, qo.gp.act_order = act_order;
    qo.gp.mse = mse;
    qo.gp.static_groups = static_groups, qo.gp.damp = damp, qo.gp.block_size = block;
    qo.quantize_lm_head = lm_head;
    qo.gpu_fp32 = !gpu_fp16;
    qo.for_checkpoint = out != NULL && !gguf;
    quant_linear_hook hook = {gguf_quant_linear, &gq};
    if (gguf && types_from && gguf_open(&tf, types_from) != 0) {
        rc = cli_fail();
        goto out;
    }
    if (gguf) {
        gguf_quant_init(&gq, (ggml_type)gguf_type, &qo.gp);
        gq.types_from = types_from ? &tf : NULL;
        qo.hook = &hook;
        qo.quantize_lm_head = !m.cfg.tie_embeddings; /* output gets the same type (token_embd: plain rounding) */
    }
    qo.keep_dequantized = eval != NULL || eval_kl != NULL || dump != NULL;
    if (mixed) {
        if (plan_mixed(&m, model_dir, &calib, &qo.gp, target_bpw, heuristic, measurement_file, obj, menu_sym, alloc_refine, &ms, &plan,
                       &measure_s, &refine_s) != 0) {
            rc = cli_fail();
            goto out;
        }
        qo.layer_gp = plan.layer_gp;
        qo.for_checkpoint = 1; /* in memory too: what the checkpoint cannot hold stays in float */
    }
#ifdef GPTQ_HAVE_CUDA
    if (cuda ? quantize_model_cuda(&m, &calib, &qo, &res) != 0
             : quantize_model(&m, qo.method == QMETHOD_GPTQ ? &calib : NULL, &qo, &res) != 0) {
#else
    if (quantize_model(&m, qo.method == QMETHOD_GPTQ ? &calib : NULL, &qo, &res) != 0) {
#endif
        rc = cli_fail();
        goto out;
    }
    if (mixed)
        for (int k = 0; k < res.n_rows - 1; k++)
            if (res.rows[k].quantized) res.rows[k].predicted_rel_err = mixed_predicted_rel_err(&ms, k, &plan.layer_gp[k]);
    int n_q = 0, n_kept = 0;
    for (int k = 0; k < res.n_rows; k++) {
        if (res.rows[k].quantized) n_q++;
        else if (res.rows[k].out && res.rows[k].layer >= 0) n_kept++;
    }
    fprintf(stderr, "gptq: quantized %d layers (%d kept in float) in %.1f s, %.3f bits per weight\n", n_q, n_kept,
            res.seconds, res.bpw);
    if (cuda) fprintf(stderr, "gptq: GPU memory high-water mark %.0f MiB\n", res.gpu_peak_mb);

    char settings[1024];
    snprintf(settings, sizeof settings,
             "{\"model\": \"%s\", \"method\": \"%s\", \"bits\": %d, \"group_size\": %d, \"act_order\": %s, "
             "\"static_groups\": %s, \"sym\": %s, \"damp\": %g, \"block\": %d, \"calib\": \"%s\", \"nsamples\": %d, "
             "\"seqlen\": %d, \"seed\": %d, \"calib_mix\": %g, \"target_bpw\": %g, \"alloc\": \"%s\", \"device\": \"%s\"}",
             model_dir, method, bits, group, act_order ? "true" : "false", static_groups ? "true" : "false",
             sym ? "true" : "false", damp, block, qo.method == QMETHOD_GPTQ ? calib_arg : "", nsamples, seqlen, seed,
             calib_mix, target_bpw, !mixed ? "uniform" : heuristic ? heuristic : "measured", device);
    if (report && quant_report_write(&res, m.cfg.n_layers, settings, report) != 0) {
        rc = cli_fail();
        goto out;
    }
    if (out && gguf) {
        gguf_export_opts go = {.type = (ggml_type)gguf_type, .provide = gguf_quant_provide, .ctx = &gq,
                               .types_from = types_from ? &tf : NULL};
        if (gguf_export_model(model_dir, out, &go) != 0) {
            rc = cli_fail();
            goto out;
        }
        fprintf(stderr, "gptq: wrote %s\n", out);
    } else if (out) {
        char **names = xcalloc(res.n_rows, sizeof(char *));
        for (int k = 0; k < res.n_rows; k++) names[k] = res.rows[k].name;
        gptq_ckpt_module *mods = NULL;
        if (mixed) {
            mods = xcalloc(res.n_rows, sizeof(gptq_ckpt_module));
            for (int k = 0; k < res.n_rows; k++)
                mods[k] = (gptq_ckpt_module){res.rows[k].bits, res.rows[k].group_size, act_order, res.rows[k].sym};
        }
        gptq_ckpt_meta meta = {bits, group, act_order, sym, static_groups, 1, lm_head, damp, mods};
        int wrc = gptq_ckpt_write(model_dir, &m.st, res.packed, names, res.n_rows, &meta, out, force);
        free(names);
        free(mods);
        if (wrc != 0) {
            rc = cli_fail();
            goto out;
        }
        quant_resume_finish(rs);
        fprintf(stderr, "gptq: wrote %s\n", out);
    }
    if (dump) {
        /* The weights exactly as quantized in memory, for independent checks of the checkpoint. */
        st_writer w;
        st_writer_init(&w);
        char nm[128];
        for (int k = 0; k < res.n_rows; k++) {
            const quant_layer_report *q = &res.rows[k];
            if (!q->quantized) continue;
            const linear *l = q->layer < 0 ? &m.lm_head : &m.layers[q->layer].lin[q->id];
            int64_t shape[2] = {l->out, l->in};
            snprintf(nm, sizeof nm, "%s.weight", q->name);
            st_writer_add(&w, nm, DT_F32, 2, shape, l->w);
        }
        int wrc = st_writer_write(&w, dump);
        st_writer_free(&w);
        if (wrc != 0) {
            rc = cli_fail();
            goto out;
        }
    }
    double ppl = NAN;
    if (eval) {
        int *ids = NULL;
        int n = tokenizer_encode(tok, eval_text, eval_len, 0, &ids);
        ppl_result pr;
        if (n < 0 || ppl_evaluate(&m, ids, n, eval_ctx, eval_windows, NULL, &pr) != 0) {
            free(ids);
            rc = cli_fail();
            goto out;
        }
        free(ids);
        ppl = pr.ppl;
        printf("perplexity (quantized, in memory): %.4f  (%d windows x %d tokens of %s)\n", ppl, pr.windows, eval_ctx, eval);
    }
    double kl[16];
    int n_kl = 0;
    if (eval_kl && eval_kl_measure(&m, model_dir, tok, eval_kl, eval_ctx, eval_kl_windows >= 0 ? eval_kl_windows : eval_windows, kl, 16, &n_kl) != 0) {
        rc = cli_fail();
        goto out;
    }
    double secs = now_seconds() - t0;
    printf("quantized %s in %.1f s, peak RSS %.0f MiB, %.3f bits per weight%s%s\n", model_dir, secs, peak_rss_mb(), res.bpw,
           out ? ", written to " : "", out ? out : "");
    if (json) {
        printf("{\"seconds\": %.3f, \"peak_rss_mb\": %.1f, \"bpw\": %.4f, \"out\": ", secs, peak_rss_mb(), res.bpw);
        if (out) printf("\"%s\"", out);
        else printf("null");
        if (eval) printf(", \"ppl\": %.6f", ppl);
        if (eval_kl) {
            printf(", \"kl\": [");
            for (int i = 0; i < n_kl; i++) printf("%s%.8f", i ? ", " : "", kl[i]);
            printf("]");
        }
        if (cuda)
            printf(", \"device\": \"cuda\", \"gpu_fp32\": %s, \"quantize_seconds\": %.3f, \"gpu_peak_mb\": %.1f",
                   gpu_fp16 ? "false" : "true", res.seconds, res.gpu_peak_mb);
        if (mixed)
        {
            printf(", \"target_bpw\": %.4f, \"plan_seconds\": %.3f, \"measure_seconds\": %.3f, \"measured_now\": %d, "
                   "\"quantize_seconds\": %.3f, ",
                   target_bpw, measure_s, ms.seconds, ms.measured_now, res.seconds);
            if (alloc_refine) printf("\"refine_rounds\": %d, \"refine_seconds\": %.3f, ", alloc_refine, refine_s);
            if (isfinite(plan.predicted)) printf("\"predicted\": %.6g, ", plan.predicted);
            else printf("\"predicted\": null, ");
            printf("\"optimal\": %s", !heuristic && plan.st.exact ? "true" : "false");
        }
        printf("}\n");
    }
out:
    if (gguf) gguf_quant_free(&gq);
    if (tf.path) gguf_close(&tf);
    if (rc != 0 && quant_resume_done(rs) == 0) quant_resume_finish(rs); /* no finished block: nothing to resume */
    quant_resume_free(rs);
    mixed_plan_free(&plan);
    measurement_free(&ms);
    free(eval_text);
    quant_result_free(&res);
    calib_free(&calib);
    tokenizer_free(tok);
    llama_free(&m);
    return rc;
}
