/* Resumable GPTQ quantization: the state of a run kept in OUT.partial/ after every block.
 *
 * After block l the pipeline needs nothing but the next block's inputs X (windows·seqlen,
 * dim) and the results of blocks 0..l, so that is the state:
 *   state.json             format, settings, model fingerprint, blocks done, report rows
 *   block.<b>.safetensors  the packed layers of block b ("<linear>.qweight" etc.)
 *   x.<done>.safetensors   X, the inputs of block `done`
 * Each file is written under a temporary name and renamed; state.json is written last, so
 * a run killed at any instant (SIGKILL, Ctrl-C, power) leaves the state of its last
 * finished block.  A resumed run restores that state and computes exactly what the
 * interrupted one would have: the checkpoint is byte-identical to an uninterrupted run's.
 * The final directory appears only when the checkpoint is complete; OUT.partial is then
 * removed. */
#ifndef GPTQ_QUANT_RESUME_H
#define GPTQ_QUANT_RESUME_H

#include "io/safetensors.h"
#include "quant/pipeline.h"

typedef struct quant_resume quant_resume;

/* Opens (or starts) the state directory out_dir.partial for a run whose result depends on
 * `settings` (every option that changes the checkpoint, as text), on the contents of
 * `files` (NULL-terminated: config.json, the calibration file) and on the model's weight
 * files (sizes and modification times).  An existing state is continued only with
 * `resume` and only if all of that matches; `force` discards it; neither is an error
 * that says so.  NULL + error on failure. */
quant_resume *quant_resume_open(const char *out_dir, const char *settings, const char *const *files, const st_archive *st,
                                int n_layers, int resume, int force);
/* Blocks an earlier run finished (0: starting from the beginning). */
int quant_resume_done(const quant_resume *rs);
/* The hooks to put in quant_options. */
const quant_block_hooks *quant_resume_hooks(quant_resume *rs);
/* Ctrl-C / SIGTERM: print where the state stands and how to continue, then die of the
 * signal as usual (the state on disk is always consistent). */
void quant_resume_catch_signals(quant_resume *rs);
/* The checkpoint is complete: removes the state directory. */
void quant_resume_finish(quant_resume *rs);
void quant_resume_free(quant_resume *rs);

#endif
