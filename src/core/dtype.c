#include "core/dtype.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[DT_COUNT] = {
    [DT_F32] = {"F32", 4},  [DT_F16] = {"F16", 2}, [DT_BF16] = {"BF16", 2}, [DT_I32] = {"I32", 4},
    [DT_I64] = {"I64", 8},  [DT_I16] = {"I16", 2}, [DT_I8] = {"I8", 1},     [DT_U8] = {"U8", 1},
    [DT_F64] = {"F64", 8},  [DT_BOOL] = {"BOOL", 1},
};

size_t dtype_size(gptq_dtype t) { return (unsigned)t < DT_COUNT ? dtype_info[t].size : 0; }
const char *dtype_name(gptq_dtype t) { return (unsigned)t < DT_COUNT ? dtype_info[t].name : "?"; }

int dtype_parse(const char *s, gptq_dtype *out) {
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (gptq_dtype)i;
            return 0;
        }
    return -1;
}

void convert_to_f32(float *dst, const void *src, gptq_dtype t, size_t n) {
    if (t == DT_F32) {
        memcpy(dst, src, n * 4);
    } else if (t == DT_BF16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
    } else if (t == DT_F16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
    }
}

void convert_from_f32(void *dst, const float *src, gptq_dtype t, size_t n) {
    if (t == DT_F32) {
        memcpy(dst, src, n * 4);
    } else if (t == DT_BF16) {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = f32_to_bf16(src[i]);
    } else if (t == DT_F16) {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = f32_to_f16(src[i]);
    }
}
