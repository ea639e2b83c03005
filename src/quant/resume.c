#include "quant/resume.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"

#define STATE_FORMAT 1

struct quant_resume {
    char *dir;            /* OUT.partial */
    char *settings;
    char fingerprint[65]; /* sha256 of the input files' contents and the weight files' sizes/times */
    int n_layers;
    int done;             /* blocks finished according to state.json */
    /* Fault injection for tests, GPTQ_TEST_KILL_AFTER_BLOCK=N[:KILL|INT|TERM|MID]: after
     * saving block N the process sends itself that signal (MID: SIGKILL after the block's
     * files are written but before state.json commits them). */
    int kill_after, kill_signal, kill_mid;
    quant_block_hooks hooks;
};

/* ---- the model/input fingerprint ---- */

static int fingerprint(char hex[65], const char *const *files, const st_archive *st) {
    sha256_ctx c;
    sha256_init(&c);
    for (int i = 0; files && files[i]; i++) {
        size_t n;
        char *data = fs_read_all(files[i], &n);
        if (!data) return -1;
        sha256_update(&c, &n, sizeof n);
        sha256_update(&c, data, n);
        free(data);
    }
    for (int f = 0; st && f < st->n_files; f++) {
        struct stat sb;
        if (stat(st->paths[f], &sb) != 0) return gptq_fail("%s: cannot stat", st->paths[f]);
        int64_t v[3] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec};
        sha256_update(&c, v, sizeof v);
    }
    unsigned char d[32];
    sha256_final(&c, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return 0;
}

/* ---- files of the state directory ---- */

static char *state_path(const quant_resume *rs, const char *fmt, int k) {
    char name[64];
    snprintf(name, sizeof name, fmt, k);
    return fs_join(rs->dir, name);
}

/* Temporaries of writes that a kill interrupted ("<name>.tmp.<pid>"). */
static void remove_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) {
            char *p = fs_join(dir, e->d_name);
            unlink(p);
            free(p);
        }
    closedir(d);
}

static double json_num(const cJSON *o, const char *k) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(j) ? j->valuedouble : NAN; /* NaN is written as null */
}

static cJSON *row_json(const quant_layer_report *q, const gptq_packed *pk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", q->name);
    cJSON_AddNumberToObject(o, "quantized", q->quantized);
    cJSON_AddStringToObject(o, "skip_reason", q->skip_reason);
    cJSON_AddNumberToObject(o, "out", (double)q->out);
    cJSON_AddNumberToObject(o, "in", (double)q->in);
    cJSON_AddNumberToObject(o, "loss", q->loss); /* cJSON writes doubles so that they read back exactly */
    cJSON_AddNumberToObject(o, "rel_err", q->rel_err);
    cJSON_AddNumberToObject(o, "weight_rmse", q->weight_rmse);
    cJSON_AddNumberToObject(o, "bpw", q->bpw);
    cJSON_AddNumberToObject(o, "seconds", q->seconds);
    cJSON_AddNumberToObject(o, "damp_retries", q->damp_retries);
    cJSON_AddNumberToObject(o, "dead", q->dead);
    if (pk->qweight) {
        cJSON_AddNumberToObject(o, "bits", pk->bits);
        cJSON_AddNumberToObject(o, "group_size", pk->group_size);
    }
    return o;
}

static int write_state(const quant_resume *rs, int done, const quant_result *r) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "format", STATE_FORMAT);
    cJSON_AddStringToObject(root, "settings", rs->settings);
    cJSON_AddStringToObject(root, "fingerprint", rs->fingerprint);
    cJSON_AddNumberToObject(root, "n_layers", rs->n_layers);
    cJSON_AddNumberToObject(root, "done", done);
    cJSON *rows = cJSON_AddArrayToObject(root, "rows");
    for (int k = 0; r && k < done * LIN_COUNT; k++) cJSON_AddItemToArray(rows, row_json(&r->rows[k], &r->packed[k]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = fs_write_text(rs->dir, "state.json", text);
    free(text);
    return rc;
}

/* ---- Ctrl-C ---- */

static char sig_msg[1024];
static volatile sig_atomic_t sig_len;

static void set_signal_message(const quant_resume *rs) {
    int n = snprintf(sig_msg, sizeof sig_msg,
                     "\ngptq: interrupted; %d of %d blocks are saved in %s: run the same command with --resume to continue\n",
                     rs->done, rs->n_layers, rs->dir);
    sig_len = n < 0 ? 0 : n >= (int)sizeof sig_msg ? (int)sizeof sig_msg - 1 : n;
}

static void on_signal(int sig) {
    if (sig_len > 0 && write(2, sig_msg, (size_t)sig_len) < 0) sig_len = 0;
    signal(sig, SIG_DFL);
    raise(sig);
}

void quant_resume_catch_signals(quant_resume *rs) {
    set_signal_message(rs);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

/* ---- the hooks ---- */

static const char *const part_names[4] = {"qweight", "qzeros", "scales", "g_idx"};

static int block_done(void *ctx, int done, const float *X, size_t rows, int dim, const quant_result *r) {
    quant_resume *rs = ctx;
    int b = done - 1;
    /* 1. the block's packed layers */
    st_writer w;
    st_writer_init(&w);
    char nm[64];
    for (int j = 0; j < LIN_COUNT; j++) {
        const gptq_packed *p = &r->packed[b * LIN_COUNT + j];
        if (!p->qweight) continue;
        int64_t sq[2] = {p->in * p->bits / 32, p->out}, sz[2] = {p->groups, p->out * p->bits / 32}, ss[2] = {p->groups, p->out},
                sg[1] = {p->in};
        snprintf(nm, sizeof nm, "%d.qweight", j);
        st_writer_add(&w, nm, DT_I32, 2, sq, p->qweight);
        snprintf(nm, sizeof nm, "%d.qzeros", j);
        st_writer_add(&w, nm, DT_I32, 2, sz, p->qzeros);
        snprintf(nm, sizeof nm, "%d.scales", j);
        st_writer_add(&w, nm, DT_F16, 2, ss, p->scales);
        snprintf(nm, sizeof nm, "%d.g_idx", j);
        st_writer_add(&w, nm, DT_I32, 1, sg, p->g_idx);
    }
    char *path = state_path(rs, "block.%d.safetensors", b);
    int rc = st_writer_write(&w, path);
    st_writer_free(&w);
    free(path);
    /* 2. the next block's inputs */
    if (rc == 0) {
        st_writer_init(&w);
        st_writer_add(&w, "x", DT_F32, 2, (int64_t[]){(int64_t)rows, dim}, X);
        path = state_path(rs, "x.%d.safetensors", done);
        rc = st_writer_write(&w, path);
        st_writer_free(&w);
        free(path);
    }
    if (rc == 0 && rs->kill_mid && rs->kill_after == done) raise(SIGKILL);
    /* 3. the commit point; then the previous inputs are garbage */
    if (rc == 0) rc = write_state(rs, done, r);
    if (rc != 0) return gptq_fail_context("%s: saving the state after block %d", rs->dir, b);
    path = state_path(rs, "x.%d.safetensors", done - 1);
    unlink(path);
    free(path);
    rs->done = done;
    set_signal_message(rs);
    if (rs->kill_after == done) raise(rs->kill_signal);
    return 0;
}

/* Copies tensor `name` of a (dtype, shape) into a new heap array. */
static void *take(const st_archive *a, const char *name, gptq_dtype dt, int ndim, const int64_t *shape) {
    const st_tensor *t = st_require(a, name, ndim, shape);
    if (!t) return NULL;
    if (t->dtype != dt) {
        gptq_fail("%s: tensor '%s' has dtype %s, not %s", a->paths[0], name, dtype_name(t->dtype), dtype_name(dt));
        return NULL;
    }
    void *p = xmalloc(t->nbytes ? t->nbytes : 1);
    memcpy(p, t->data, t->nbytes);
    return p;
}

static int restore_block(quant_resume *rs, int b, const cJSON *rows, quant_result *r) {
    char *path = state_path(rs, "block.%d.safetensors", b);
    st_archive a;
    int rc = st_open_file(&a, path);
    free(path);
    if (rc != 0) return -1;
    for (int j = 0; j < LIN_COUNT && rc == 0; j++) {
        int k = b * LIN_COUNT + j;
        const cJSON *o = cJSON_GetArrayItem(rows, k);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        quant_layer_report *q = &r->rows[k];
        if (!cJSON_IsString(name) || strcmp(name->valuestring, q->name) != 0) {
            rc = gptq_fail("%s/state.json: row %d is not %s", rs->dir, k, q->name);
            break;
        }
        const cJSON *skip = cJSON_GetObjectItemCaseSensitive(o, "skip_reason");
        snprintf(q->skip_reason, sizeof q->skip_reason, "%s", cJSON_IsString(skip) ? skip->valuestring : "");
        q->quantized = (int)json_num(o, "quantized") == 1;
        q->out = (int64_t)json_num(o, "out"), q->in = (int64_t)json_num(o, "in");
        q->loss = json_num(o, "loss"), q->rel_err = json_num(o, "rel_err"), q->weight_rmse = json_num(o, "weight_rmse");
        q->bpw = json_num(o, "bpw"), q->seconds = json_num(o, "seconds");
        q->damp_retries = (int)json_num(o, "damp_retries"), q->dead = (int)json_num(o, "dead");
        double bits = json_num(o, "bits");
        if (isnan(bits)) continue; /* not packed */
        gptq_packed *p = &r->packed[k];
        p->bits = (int)bits, p->group_size = (int)json_num(o, "group_size");
        p->out = q->out, p->in = q->in;
        char nm[64];
        snprintf(nm, sizeof nm, "%d.scales", j);
        const st_tensor *ts = st_find(&a, nm);
        if (!ts || ts->ndim != 2 || gptq_pack_check(p->out, p->in, p->bits) != 0) {
            rc = gptq_fail("%s: block %d layer %s: missing or inconsistent packed tensors", rs->dir, b, q->name);
            break;
        }
        p->groups = ts->shape[0];
        int64_t sq[2] = {p->in * p->bits / 32, p->out}, sz[2] = {p->groups, p->out * p->bits / 32}, ss[2] = {p->groups, p->out},
                sg[1] = {p->in};
        const int64_t *shapes[4] = {sq, sz, ss, sg};
        const gptq_dtype dts[4] = {DT_I32, DT_I32, DT_F16, DT_I32};
        void **dst[4] = {(void **)&p->qweight, (void **)&p->qzeros, (void **)&p->scales, (void **)&p->g_idx};
        for (int t = 0; t < 4 && rc == 0; t++) {
            snprintf(nm, sizeof nm, "%d.%s", j, part_names[t]);
            if (!(*dst[t] = take(&a, nm, dts[t], t == 3 ? 1 : 2, shapes[t]))) rc = -1;
        }
    }
    st_close(&a);
    return rc;
}

static int restore(void *ctx, float *X, size_t rows, int dim, quant_result *r) {
    quant_resume *rs = ctx;
    if (rs->done == 0) return 0;
    char *path = fs_join(rs->dir, "state.json");
    char *text = fs_read_all(path, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *jrows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    int rc = 0;
    if (!cJSON_IsArray(jrows) || cJSON_GetArraySize(jrows) != rs->done * LIN_COUNT)
        rc = gptq_fail("%s: no report rows for the %d finished blocks", path, rs->done);
    free(path);
    for (int b = 0; b < rs->done && rc == 0; b++) rc = restore_block(rs, b, jrows, r);
    cJSON_Delete(root);
    if (rc == 0) {
        st_archive a;
        path = state_path(rs, "x.%d.safetensors", rs->done);
        rc = st_open_file(&a, path);
        free(path);
        if (rc == 0) {
            const st_tensor *t = st_require(&a, "x", 2, (int64_t[]){(int64_t)rows, dim});
            if (t && t->dtype == DT_F32) memcpy(X, t->data, t->nbytes);
            else rc = t ? gptq_fail("%s: x is not F32", a.paths[0]) : -1;
            st_close(&a);
        }
    }
    if (rc != 0) return gptq_fail_context("cannot resume from %s (pass --force to start over)", rs->dir);
    return rs->done;
}

/* ---- opening ---- */

/* Reads state.json: 0 and rs->done if it belongs to this run, else -1 + error. */
static int read_state(quant_resume *rs) {
    char *path = fs_join(rs->dir, "state.json");
    char *text = fs_read_all(path, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    int rc = 0;
    if (!root) {
        rc = fs_exists(path) ? gptq_fail("%s: not valid JSON", path) : -1;
    } else {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "settings");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "fingerprint");
        double fmt = json_num(root, "format"), nl = json_num(root, "n_layers"), done = json_num(root, "done");
        if (fmt != STATE_FORMAT || !cJSON_IsString(s) || !cJSON_IsString(f) || nl != rs->n_layers || !(done >= 0 && done <= nl))
            rc = gptq_fail("%s: not a state this version can resume", path);
        else if (strcmp(s->valuestring, rs->settings) != 0)
            rc = gptq_fail("%s: the interrupted run used other settings (%s)", path, s->valuestring);
        else if (strcmp(f->valuestring, rs->fingerprint) != 0)
            rc = gptq_fail("%s: the model, its config or the calibration file changed since the interrupted run", path);
        else
            rs->done = (int)done;
    }
    cJSON_Delete(root);
    free(path);
    if (rc != 0) return gptq_fail_context("cannot resume (pass --force to discard %s and start over)", rs->dir);
    return 0;
}

quant_resume *quant_resume_open(const char *out_dir, const char *settings, const char *const *files, const st_archive *st,
                                int n_layers, int resume, int force) {
    quant_resume *rs = xcalloc(1, sizeof *rs);
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--; /* "out/" -> "out.partial" */
    rs->dir = xmalloc(n + 16);
    memcpy(rs->dir, out_dir, n);
    strcpy(rs->dir + n, ".partial");
    rs->settings = xstrdup(settings);
    rs->n_layers = n_layers;
    rs->hooks = (quant_block_hooks){rs, restore, block_done};
    const char *kill = getenv("GPTQ_TEST_KILL_AFTER_BLOCK");
    rs->kill_after = kill ? atoi(kill) : -1;
    const char *sig = kill ? strchr(kill, ':') : NULL;
    rs->kill_signal = !sig ? SIGKILL : !strcmp(sig, ":INT") ? SIGINT : !strcmp(sig, ":TERM") ? SIGTERM : SIGKILL;
    rs->kill_mid = sig && !strcmp(sig, ":MID");
    if (fingerprint(rs->fingerprint, files, st) != 0) goto fail;
    if (fs_exists(rs->dir)) {
        if (resume) {
            if (read_state(rs) != 0) goto fail;
            remove_temporaries(rs->dir);
            return rs;
        }
        if (!force) {
            gptq_fail("%s holds an interrupted run: pass --resume to continue it, or --force to discard it", rs->dir);
            goto fail;
        }
        if (fs_remove_tree(rs->dir) != 0) goto fail;
    } else if (resume) {
        gptq_warn("--resume: no %s, starting from the beginning", rs->dir);
    }
    if (fs_mkdirs(rs->dir) != 0) goto fail;
    if (write_state(rs, 0, NULL) != 0) {
        fs_remove_tree(rs->dir);
        goto fail;
    }
    return rs;
fail:
    quant_resume_free(rs);
    return NULL;
}

int quant_resume_done(const quant_resume *rs) { return rs ? rs->done : 0; }

const quant_block_hooks *quant_resume_hooks(quant_resume *rs) { return rs ? &rs->hooks : NULL; }

void quant_resume_finish(quant_resume *rs) {
    if (!rs) return;
    sig_len = 0; /* nothing to resume any more */
    fs_remove_tree(rs->dir);
}

void quant_resume_free(quant_resume *rs) {
    if (!rs) return;
    free(rs->dir);
    free(rs->settings);
    free(rs);
}
