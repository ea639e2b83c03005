/* Run-time CPU feature detection, so one binary runs everywhere and uses what it finds. */
#ifndef GPTQ_KERNELS_CPU_FEATURES_H
#define GPTQ_KERNELS_CPU_FEATURES_H

typedef struct {
    int avx2;      /* AVX2 + FMA + F16C, the baseline of our SIMD kernels */
    int avx512;    /* AVX-512 F/BW/VL/DQ */
    int avx512vnni;
    int avx512bf16;
} cpu_features;

/* Detected once. GPTQ_CPU=scalar|avx2|avx512 in the environment caps what is used
 * (for tests and comparisons). */
const cpu_features *cpu_get_features(void);
/* "avx512", "avx2" or "scalar": the best path in use. */
const char *cpu_path_name(void);

#endif
