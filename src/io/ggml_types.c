#include "io/ggml_types.h"

#include <strings.h>

/* Sizes follow the block structs of quant/ggml_blocks.h (which asserts them). */
static const ggml_type_traits traits[GGML_T_MAX] = {
    [GGML_T_F32] = {"f32", 1, 4},       [GGML_T_F16] = {"f16", 1, 2},       [GGML_T_BF16] = {"bf16", 1, 2},
    [GGML_T_Q4_0] = {"q4_0", 32, 18},   [GGML_T_Q4_1] = {"q4_1", 32, 20},   [GGML_T_Q5_0] = {"q5_0", 32, 22},
    [GGML_T_Q5_1] = {"q5_1", 32, 24},   [GGML_T_Q8_0] = {"q8_0", 32, 34},   [GGML_T_Q2_K] = {"q2_k", 256, 84},
    [GGML_T_Q3_K] = {"q3_k", 256, 110}, [GGML_T_Q4_K] = {"q4_k", 256, 144}, [GGML_T_Q5_K] = {"q5_k", 256, 176},
    [GGML_T_Q6_K] = {"q6_k", 256, 210},
};

const ggml_type_traits *ggml_traits(uint32_t type) {
    if (type >= GGML_T_MAX || !traits[type].name) return NULL;
    return &traits[type];
}

int ggml_type_parse(const char *name) {
    for (int t = 0; t < GGML_T_MAX; t++)
        if (traits[t].name && strcasecmp(traits[t].name, name) == 0) return t;
    return -1;
}

size_t ggml_row_size(ggml_type t, int64_t ne0) {
    const ggml_type_traits *tr = ggml_traits(t);
    return (size_t)(ne0 / tr->block_size) * (size_t)tr->type_size;
}
