/* A memory-bandwidth probe: how fast this machine streams a buffer much larger than its
 * caches, read-only, with all OpenMP threads — the access pattern of a decode step, which
 * reads every weight once.  Decode speed is then stated as a fraction of it. */
#ifndef GPTQ_KERNELS_CPU_MEMBW_H
#define GPTQ_KERNELS_CPU_MEMBW_H

#include <stddef.h>

/* Best read bandwidth in GB/s (1e9 bytes/s) over `reps` passes of a `bytes` buffer
 * (rounded down to whole 64-byte lines), split evenly over the OpenMP threads. */
double membw_read_gbs(size_t bytes, int reps);

#endif
