/* Progress lines on stderr ("perplexity 12/40 windows, 3.1 s, ETA 7.2 s"), drawn only
 * when stderr is a terminal so that logs and pipes stay clean. */
#ifndef GPTQ_CORE_PROGRESS_H
#define GPTQ_CORE_PROGRESS_H

typedef struct {
    const char *label; /* what is being counted, e.g. "layer" */
    long total;
    double t0;         /* start time (now_seconds) */
    double last_draw;
    int enabled;
} progress;

void progress_start(progress *p, const char *label, long total);
/* Reports `done` of `total` items complete. Redraws at most ~10 times a second. */
void progress_update(progress *p, long done);
/* Clears the line. */
void progress_end(progress *p);

#endif
