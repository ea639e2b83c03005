#include "core/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "core/fs.h"

void progress_start(progress *p, const char *label, long total) {
    p->label = label;
    p->total = total;
    p->t0 = now_seconds();
    p->last_draw = 0;
    p->enabled = isatty(2);
}

void progress_update(progress *p, long done) {
    if (!p->enabled) return;
    double t = now_seconds();
    if (done < p->total && t - p->last_draw < 0.1) return;
    p->last_draw = t;
    double el = t - p->t0;
    double eta = done > 0 ? el * (p->total - done) / done : 0;
    fprintf(stderr, "\r\033[K%s %ld/%ld, %.1f s elapsed, ETA %.1f s", p->label, done, p->total, el, eta);
    fflush(stderr);
}

void progress_end(progress *p) {
    if (!p->enabled) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}
