/* Element types of tensors in files, and conversions to and from fp32.
 * Conversions are exact for bf16 -> f32 and f16 -> f32; f32 -> f16/bf16 round to nearest even. */
#ifndef GPTQ_CORE_DTYPE_H
#define GPTQ_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    DT_F32 = 0,
    DT_F16,
    DT_BF16,
    DT_I32,
    DT_I64,
    DT_I16,
    DT_I8,
    DT_U8,
    DT_F64,
    DT_BOOL,
    DT_COUNT
} gptq_dtype;

/* Bytes per element. */
size_t dtype_size(gptq_dtype t);
/* The safetensors spelling ("F32", "BF16", ...). */
const char *dtype_name(gptq_dtype t);
/* Parses a safetensors dtype string; returns -1 if unknown. */
int dtype_parse(const char *s, gptq_dtype *out);

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE half precision in the compiler's arithmetic type: _Float16 (gcc, clang >= 15);
 * clang 14 (Debian 12's, used for the libFuzzer build) has it on x86 only as the storage
 * type __fp16, which converts with the same round-to-nearest-even. */
#if defined(__clang__) && __clang_major__ < 15
typedef __fp16 gptq_half_t;
#else
typedef _Float16 gptq_half_t;
#endif

static inline float f16_to_f32(uint16_t h) {
    gptq_half_t v;
    memcpy(&v, &h, 2);
    return (float)v;
}

static inline uint16_t f32_to_f16(float f) {
    gptq_half_t v = (gptq_half_t)f;
    uint16_t h;
    memcpy(&h, &v, 2);
    return h;
}

/* Converts n elements of type t at src to fp32 (t must be F32, F16 or BF16). */
void convert_to_f32(float *dst, const void *src, gptq_dtype t, size_t n);
/* Converts n fp32 values to type t (F32, F16 or BF16). */
void convert_from_f32(void *dst, const float *src, gptq_dtype t, size_t n);

#endif
