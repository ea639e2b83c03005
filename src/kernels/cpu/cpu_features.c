#include "kernels/cpu/cpu_features.h"

#include <stdlib.h>
#include <string.h>

static cpu_features feats;
static int detected;

const cpu_features *cpu_get_features(void) {
    if (detected) return &feats;
#if defined(__x86_64__)
    __builtin_cpu_init();
    feats.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    feats.avx512 = feats.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    feats.avx512vnni = feats.avx512 && __builtin_cpu_supports("avx512vnni");
    feats.avx512bf16 = feats.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
    const char *cap = getenv("GPTQ_CPU");
    if (cap && strcmp(cap, "scalar") == 0) memset(&feats, 0, sizeof feats);
    if (cap && strcmp(cap, "avx2") == 0) feats.avx512 = feats.avx512vnni = feats.avx512bf16 = 0;
    detected = 1;
    return &feats;
}

const char *cpu_path_name(void) {
    const cpu_features *f = cpu_get_features();
    return f->avx512 ? "avx512" : f->avx2 ? "avx2" : "scalar";
}
