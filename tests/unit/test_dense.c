/* Dense row dot products (kernels/cpu/dense.c): every SIMD level and weight dtype against a
 * double-precision sum of the same rounded weights, lengths around the vector widths. */
#include <stdint.h>

#include "check.h"
#include "core/dtype.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dense.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

int main(void) {
    const int64_t lens[] = {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 2048, 5633};
    const gptq_dtype dts[] = {DT_F32, DT_F16, DT_BF16};
    const cpu_features *f = cpu_get_features();
    const int top = f->avx512 ? 2 : f->avx2 ? 1 : 0;
    for (size_t a = 0; a < sizeof lens / sizeof *lens; a++)
        for (size_t b = 0; b < 3; b++) {
            const int64_t n = lens[a];
            const gptq_dtype dt = dts[b];
            float *x = malloc(sizeof(float) * (size_t)(n + 1)), *wf = malloc(sizeof(float) * (size_t)(n + 1));
            uint16_t *wh = malloc(sizeof(uint16_t) * (size_t)(n + 1));
            float *w32 = malloc(sizeof(float) * (size_t)(n + 1));
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                x[i + 1] = frand();
                const float w = frand();
                if (dt == DT_F16) wh[i + 1] = f32_to_f16(w), wf[i] = f16_to_f32(wh[i + 1]);
                else if (dt == DT_BF16) wh[i + 1] = f32_to_bf16(w), wf[i] = bf16_to_f32(wh[i + 1]);
                else w32[i + 1] = w, wf[i] = w;
                ref += (double)x[i + 1] * wf[i];
                mag += fabs((double)x[i + 1] * wf[i]);
            }
            /* rows at an odd element offset: unaligned loads */
            const void *row = dt == DT_F32 ? (const void *)(w32 + 1) : (const void *)(wh + 1);
            for (int level = 0; level <= top; level++) {
                const float got = dense_dot_ex(x + 1, row, dt, n, level);
                CHECK(fabs(got - ref) <= 1e-6 * mag + 1e-30, "%s n=%lld level %d: %.9g vs %.9g", dtype_name(dt), (long long)n,
                      level, got, ref);
            }
            free(x), free(wf), free(wh), free(w32);
        }
    return check_done();
}
