/* The GPU forward pass (model/cuda/llama_cuda.h) against the CPU one (model/llama.h) on
 * stories260K: the float model, GPTQ w4 g32 act-order and RTN w2 g64 asym checkpoints
 * (quantized here with $GPTQ_BIN).  A 24-token prefill (cuBLAS path, all logits) and 12
 * decode steps (GEMV path, replayed CUDA graph) must give logits within 2% of the CPU's
 * (normwise; the GPU holds embeddings, dense weights and the KV cache in fp16) and the
 * same greedy token nearly everywhere.  Skips (77) without CUDA, a GPU or ../shared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifndef GPTQ_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else

#include <cuda_runtime_api.h>

#include "core/error.h"
#include "kernels/cuda/cuq.h"
#include "kernels/cuda/model_kernels.h"
#include "model/cuda/llama_cuda.h"
#include "model/llama.h"

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static double rel(const float *a, const float *b, int n) {
    double md = 0, mr = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > mr) mr = fabs(b[i]);
    }
    return mr > 0 ? md / mr : md;
}

static int want_attn_o = -1; /* >= 0: whether one-token decode must take the fused attention + o_proj */
static int want_fold = -1;   /* >= 0: whether it must fold the norms into the GEMVs */
static int want_prenorm = -1; /* >= 0: whether it must defer the attention norm (down_proj -> q/k/v) */

/* P-token prefill (P <= 8 takes the decode kernels), then G = 12 decode steps. */
static void compare_model_p(const char *dir, const char *what, int want_frag, int P) {
    llama_model cm;
    int rc = llama_load(&cm, dir);
    CHECK(rc == 0, "%s: CPU load: %s", what, gptq_last_error());
    if (rc) return;
    const int G = 12, V = cm.cfg.vocab_size;
    llama_cuda *gm = llama_cuda_load(dir, P + G, P);
    CHECK(gm != NULL, "%s: GPU load: %s", what, gptq_last_error());
    if (!gm) {
        llama_free(&cm);
        return;
    }
    if (want_frag >= 0) {
        llama_cuda_info info;
        llama_cuda_get_info(gm, &info);
        CHECK(info.frag_decode == want_frag, "%s: fragment-order decode %s", what, want_frag ? "not taken" : "taken");
        if (want_attn_o >= 0)
            CHECK(info.attn_o_decode == want_attn_o, "%s: fused attention + o_proj %s", what, want_attn_o ? "not taken" : "taken");
        if (want_fold >= 0)
            CHECK(info.fold_decode == want_fold, "%s: norm fold %s", what, want_fold ? "not taken" : "taken");
        if (want_prenorm >= 0)
            CHECK(info.prenorm_decode == want_prenorm, "%s: deferred norm %s", what, want_prenorm ? "not taken" : "taken");
    }
    llama_state *s = llama_state_new(&cm, P + G, P);
    int *ids = malloc(sizeof(int) * (size_t)(P + G));
    CHECK(ids != NULL, "%s: out of memory", what);
    if (!ids) {
        llama_state_free(s);
        llama_cuda_free(gm);
        llama_free(&cm);
        return;
    }
    uint64_t r = 12345;
    for (int i = 0; i < P + G; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int)((r >> 33) % (uint64_t)V);
    }
    const float *lc = llama_forward(&cm, s, ids, P, 0, 1);
    const float *lg = llama_cuda_forward(gm, ids, P, 0, 1);
    CHECK(lg != NULL, "%s: GPU prefill: %s", what, gptq_last_error());
    double worst = 0, worst_pre = 0;  /* decode steps, prefill positions */
    int agree = 0, total = 0;
    if (lg) {
        for (int t = 0; t < P; t++) {
            double e = rel(lg + (size_t)t * V, lc + (size_t)t * V, V);
            if (e > worst_pre) worst_pre = e;
            agree += argmax(lg + (size_t)t * V, V) == argmax(lc + (size_t)t * V, V);
            total++;
        }
        for (int i = 0; i < G; i++) {
            lc = llama_forward(&cm, s, &ids[P + i], 1, P + i, 0);
            lg = llama_cuda_forward(gm, &ids[P + i], 1, P + i, 0);
            CHECK(lg != NULL, "%s: GPU decode: %s", what, gptq_last_error());
            if (!lg) break;
            double e = rel(lg, lc, V);
            if (e > worst) worst = e;
            agree += argmax(lg, V) == argmax(lc, V);
            total++;
        }
    }
    printf("%s, %d-token prefill: worst normwise logit error %.3g (prefill) %.3g (decode), greedy tokens agree %d/%d\n", what, P,
           worst_pre, worst, agree, total);
    CHECK(worst_pre <= 2e-2, "%s: prefill logits differ from the CPU's by %.3g", what, worst_pre);
    CHECK(worst <= 2e-2, "%s: decode logits differ from the CPU's by %.3g", what, worst);
    CHECK(agree >= total - 2, "%s: greedy tokens agree only %d/%d", what, agree, total);
    /* bad calls fail cleanly */
    int bad = V;
    CHECK(llama_cuda_forward(gm, &bad, 1, 0, 0) == NULL, "%s: token id outside the vocabulary accepted", what);
    CHECK(llama_cuda_forward(gm, ids, 1, P + G, 0) == NULL, "%s: position past the context accepted", what);
    free(ids);
    llama_state_free(s);
    llama_cuda_free(gm);
    llama_free(&cm);
}

static void compare_model(const char *dir, const char *what, int want_frag) { compare_model_p(dir, what, want_frag, 24); }

/* The decode logits of G steps after a P-token prompt with the fused attention + o_proj
 * (attn_o = 1) or apart (0), into out (G, V); 0 when done. */
static int gpu_decode_logits(const char *dir, int P, int G, int attn_o, float *out, int V) {
    cuk_attention_o_set(attn_o, 0);
    llama_cuda *gm = llama_cuda_load(dir, P + G, P);
    int ok = gm != NULL;
    if (gm) {
        llama_cuda_info info;
        llama_cuda_get_info(gm, &info);
        CHECK(info.attn_o_decode == attn_o, "%d-token prompt: fused attention + o_proj %s", P, attn_o ? "not taken" : "taken");
    }
    int *ids = malloc(sizeof(int) * (size_t)(P + G));
    ok = ok && ids != NULL;
    uint64_t r = 777;
    for (int i = 0; ok && i < P + G; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int)((r >> 33) % (uint64_t)V);
    }
    ok = ok && llama_cuda_forward(gm, ids, P, 0, 0) != NULL;
    for (int i = 0; ok && i < G; i++) {
        const float *lg = llama_cuda_forward(gm, &ids[P + i], 1, P + i, 0);
        ok = lg != NULL;
        if (ok) memcpy(out + (size_t)i * V, lg, sizeof(float) * (size_t)V);
    }
    CHECK(ok, "%d-token prompt, attention + o_proj %s: %s", P, attn_o ? "fused" : "apart", gptq_last_error());
    free(ids);
    llama_cuda_free(gm);
    cuk_attention_o_set(-1, 0);
    return ok ? 0 : -1;
}

/* Past a context of 1024 the fused kernel's blocks loop over chunks of 128 cache rows: its
 * decode logits against those of attention and o_proj apart (the same fp16 cache, the
 * same GEMVs), which must agree far closer than either does with the CPU's. */
static void compare_fused_apart(const char *dir, int P, int V) {
    const int G = 8;
    float *a = malloc(sizeof(float) * (size_t)G * V), *b = malloc(sizeof(float) * (size_t)G * V);
    CHECK(a && b, "out of memory");
    if (a && b && gpu_decode_logits(dir, P, G, 1, a, V) == 0 && gpu_decode_logits(dir, P, G, 0, b, V) == 0) {
        double worst = 0;
        for (int i = 0; i < G; i++) {
            const double e = rel(a + (size_t)i * V, b + (size_t)i * V, V);
            if (e > worst) worst = e;
        }
        printf("%d-token prompt: decode logits of the fused attention + o_proj against apart: worst normwise difference %.3g\n", P,
               worst);
        CHECK(worst <= 2e-3, "%d-token prompt: fused attention + o_proj differs from apart by %.3g", P, worst);
    }
    free(a);
    free(b);
}

/* A random Llama of 2 layers, `heads` query heads on `kv` cache heads, `hidden` wide,
 * quantized RTN 4-bit g128 into tmp/NAME-w4g128 (qd); 1 when it was made. */
static int random_w4_heads(const char *bin, const char *tmp, const char *name, int hidden, int inter, int heads, int kv, int seed,
                           char *qd, size_t qdn) {
    char cfg[1100], dir[1100], cmd[8192];
    snprintf(cfg, sizeof cfg, "%s/%s.json", tmp, name);
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    snprintf(qd, qdn, "%s/%s-w4g128", tmp, name);
    FILE *f = fopen(cfg, "w");
    CHECK(f != NULL, "cannot write %s", cfg);
    if (!f) return 0;
    fprintf(f,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
            "\"intermediate_size\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
            "\"num_hidden_layers\": 2, \"vocab_size\": 512, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
            "\"max_position_embeddings\": 256, \"tie_word_embeddings\": false, \"torch_dtype\": \"float16\"}\n",
            hidden, inter, heads, kv);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "'%s' random-model --shape '%s' --out '%s' --force --seed %d > '%s.log' 2>&1 && "
             "'%s' quantize --model '%s' --out '%s' --method rtn --bits 4 --group 128 --force >> '%s.log' 2>&1",
             bin, cfg, dir, seed, dir, bin, dir, qd, dir);
    const int rc = system(cmd);
    CHECK(rc == 0, "%s: random-model / quantize failed (see %s.log)", name, dir);
    return rc == 0;
}

static int random_w4(const char *bin, const char *tmp, const char *name, int hidden, int inter, int seed, char *qd, size_t qdn) {
    return random_w4_heads(bin, tmp, name, hidden, inter, 4, 2, seed, qd, qdn);
}

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    const char *model = check_shared("models/stories260K");
    compare_model(model, "stories260K float", 0);
    const char *bin = getenv("GPTQ_BIN"), *tmp = check_tmpdir("cuda_model");
    if (!bin) {
        printf("GPTQ_BIN not set: quantized models skipped\n");
        return check_done();
    }
    static const struct {
        const char *name, *args;
    } q[] = {
        {"gptq-w4-g32-act", "--method gptq --bits 4 --group 32 --act-order --calib auto --nsamples 8 --seqlen 64"},
        {"rtn-w2-g64-asym", "--method rtn --bits 2 --group 64 --asym"},
        {"rtn-w8-g-1", "--method rtn --bits 8 --group -1"},
    };
    for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
        char cmd[4200], out[1100];
        snprintf(out, sizeof out, "%s/%s", tmp, q[k].name);
        snprintf(cmd, sizeof cmd, "'%s' quantize --model '%s' --out '%s' %s > '%s.log' 2>&1", bin, model, out, q[k].args, out);
        int rc = system(cmd);
        CHECK(rc == 0, "%s: quantize failed (see %s.log)", q[k].name, out);
        if (rc == 0) compare_model(out, q[k].name, 0);
    }
    /* a model whose widths are multiples of 128 at 4-bit g128: decode through the
     * fragment-order GEMV (norms and attention writing fragments, the gate/up pair) */
    char qd[1100];
    if (random_w4(bin, tmp, "rand128", 256, 768, 3, qd, sizeof qd)) {
        compare_model(qd, "random 256-wide w4 g128 (fragment-order decode)", 1);
        compare_model_p(qd, "random 256-wide w4 g128 (fragment-order decode)", 1, 5);
        {   /* as if the GPU held 4 blocks: every GEMV of more than 4 tiles takes the persistent form */
            const long before = cuq_frag_multi_launches();
            cuq_frag_set_multi(1, 4);
            compare_model(qd, "random 256-wide w4 g128 (persistent fragment-order GEMV)", 1);
            cuq_frag_set_multi(-1, 0);
            CHECK(cuq_frag_multi_launches() > before, "the persistent GEMV form was not taken");
        }
        cuq_gemv_set_frag(0);
        compare_model(qd, "random 256-wide w4 g128 (tensor-core decode)", 0);
        cuq_gemv_set_frag(1);
    }
    /* head_dim 128 (4 query heads on 2 cache heads): one-token decode fuses attention, o_proj
     * and the residual add (kernels/cuda/attn_o.cu), a cluster of 8 blocks per head */
    if (random_w4(bin, tmp, "rand-hd128", 512, 1024, 5, qd, sizeof qd)) {
        want_attn_o = 1, want_fold = 0, want_prenorm = 1; /* the attention norm deferred by default */
        compare_model(qd, "random head_dim-128 w4 g128 (fused attention + o_proj, deferred norm)", 1);
        compare_model_p(qd, "random head_dim-128 w4 g128 (fused attention + o_proj, deferred norm)", 1, 1);
        compare_model_p(qd, "random head_dim-128 w4 g128 (fused, deferred norm after a 5-token prefill)", 1, 5);
        cuk_attention_o_set_prefetch(0); /* without the blocks that prefetch the next gate/up */
        compare_model(qd, "random head_dim-128 w4 g128 (fused, deferred norm, no gate/up prefetch)", 1);
        cuk_attention_o_set_prefetch(-1);
        {   /* the deferred norm through the persistent GEMV forms (q/k/v dual, down_proj) */
            const long before = cuq_frag_multi_launches();
            cuq_frag_set_multi(1, 16);
            compare_model(qd, "random head_dim-128 w4 g128 (fused, deferred norm, persistent GEMVs)", 1);
            cuq_frag_set_multi(-1, 0);
            CHECK(cuq_frag_multi_launches() > before, "the persistent GEMV form was not taken");
        }
        setenv("GPTQ_CUDA_PRENORM", "0", 1);
        want_prenorm = 0;
        compare_model(qd, "random head_dim-128 w4 g128 (fused attention + o_proj, norm kernels)", 1);
        unsetenv("GPTQ_CUDA_PRENORM");
        setenv("GPTQ_CUDA_FOLD", "1", 1);
        want_fold = 1;
        compare_model(qd, "random head_dim-128 w4 g128 (fused attention + o_proj, norms folded)", 1);
        compare_model_p(qd, "random head_dim-128 w4 g128 (fused, norms folded)", 1, 1);
        compare_model_p(qd, "random head_dim-128 w4 g128 (fused, norms folded)", 1, 5);
        cuk_attention_o_set(1, 2); /* 2 cache rows per chunk: every block runs several chunks */
        compare_model(qd, "random head_dim-128 w4 g128 (fused, chunks of 2 rows)", 1);
        cuk_attention_o_set(-1, 0);
        {   /* the folded norm in the persistent GEMV form too */
            const long before = cuq_frag_multi_launches();
            cuq_frag_set_multi(1, 16);
            compare_model(qd, "random head_dim-128 w4 g128 (fused, norms folded, persistent GEMVs)", 1);
            cuq_frag_set_multi(-1, 0);
            CHECK(cuq_frag_multi_launches() > before, "the persistent GEMV form was not taken");
        }
        unsetenv("GPTQ_CUDA_FOLD");
        want_fold = -1, want_prenorm = -1;
        cuk_attention_o_set(0, 0);
        want_attn_o = 0;
        compare_model(qd, "random head_dim-128 w4 g128 (attention and o_proj apart)", 1);
        cuk_attention_o_set(-1, 0);
        want_attn_o = -1;
        /* a context past 8 chunks of 128 positions: the fused kernel's blocks loop over
           chunks of 128 rows (the decode steps' blocks hold 137 positions) */
        compare_fused_apart(qd, 1088, 512);
    }
    /* 20 heads of 128 on 4 cache heads: o_proj's 160 tiles make 5 per warp of the fused
     * kernel, its 8-tile form (the 7B's 4096 rows make 8), against attention and o_proj
     * apart (2560 wide, its logits are ~2.3e-2 from the CPU's either way), in one chunk and
     * in chunks of 128 */
    if (random_w4_heads(bin, tmp, "rand-h20", 2560, 1024, 20, 4, 9, qd, sizeof qd)) {
        compare_fused_apart(qd, 5, 512);
        compare_fused_apart(qd, 1032, 512);
    }
    return check_done();
}
#endif
