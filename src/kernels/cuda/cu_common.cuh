// Shared by the .cu files: the library's error reporting (a C header) with C linkage.
#ifndef GPTQ_KERNELS_CUDA_CU_COMMON_CUH
#define GPTQ_KERNELS_CUDA_CU_COMMON_CUH

extern "C" {
#include "core/error.h"
}

// Grid size for a grid-stride loop over n elements with 256-thread blocks.
static inline unsigned cu_grid(long long n) {
    long long g = (n + 255) / 256;
    return (unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

#endif
