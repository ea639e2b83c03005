/* Decode attention kernels (kernels/cpu/attn.c): every SIMD level against a double-precision
 * reference on random caches, head sizes that are and are not multiples of the SIMD width. */
#include <stdint.h>

#include "check.h"
#include "kernels/cpu/attn.h"
#include "kernels/cpu/cpu_features.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void reference(double *out, const float *q, const float *k, const float *v, size_t stride, int len, int hd,
                      double scale) {
    double *sc = malloc(sizeof(double) * (size_t)len), mx = -INFINITY, sum = 0;
    for (int p = 0; p < len; p++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += (double)q[i] * k[(size_t)p * stride + i];
        sc[p] = d * scale;
        if (sc[p] > mx) mx = sc[p];
    }
    for (int p = 0; p < len; p++) sum += sc[p] = exp(sc[p] - mx);
    for (int i = 0; i < hd; i++) {
        double o = 0;
        for (int p = 0; p < len; p++) o += sc[p] / sum * v[(size_t)p * stride + i];
        out[i] = o;
    }
    free(sc);
}

int main(void) {
    const int hds[] = {4, 8, 12, 16, 40, 64, 72, 128, 256, 264};
    const int lens[] = {1, 2, 7, 64, 301};
    const cpu_features *f = cpu_get_features();
    const int top = f->avx512 ? 2 : f->avx2 ? 1 : 0;
    for (size_t a = 0; a < sizeof hds / sizeof *hds; a++)
        for (size_t b = 0; b < sizeof lens / sizeof *lens; b++) {
            const int hd = hds[a], len = lens[b];
            const size_t stride = (size_t)hd * 3 + 5; /* rows of a wider cache, unaligned */
            float *k = malloc(sizeof(float) * stride * len), *v = malloc(sizeof(float) * stride * len);
            float *q = malloc(sizeof(float) * hd), *out = malloc(sizeof(float) * hd), *sc = malloc(sizeof(float) * len);
            double *ref = malloc(sizeof(double) * hd);
            for (size_t i = 0; i < stride * len; i++) k[i] = 3 * frand(), v[i] = frand();
            for (int i = 0; i < hd; i++) q[i] = 3 * frand();
            const double scale = 1.0 / sqrt((double)hd);
            reference(ref, q, k, v, stride, len, hd, scale);
            for (int level = 0; level <= top; level++) {
                attn_decode_head_ex(out, q, k, v, stride, len, hd, (float)scale, sc, level);
                double err = 0, nrm = 0;
                for (int i = 0; i < hd; i++) err += (out[i] - ref[i]) * (out[i] - ref[i]), nrm += ref[i] * ref[i];
                CHECK(sqrt(err) <= 1e-5 * sqrt(nrm) + 1e-7, "hd %d len %d level %d: relative error %.3g", hd, len, level,
                      sqrt(err / (nrm > 0 ? nrm : 1)));
            }
            attn_decode_head(out, q, k, v, stride, len, hd, (float)scale, sc);
            double err = 0;
            for (int i = 0; i < hd; i++) err = fmax(err, fabs(out[i] - ref[i]));
            CHECK(err < 1e-5, "hd %d len %d dispatched: max error %.3g", hd, len, err);
            free(k), free(v), free(q), free(out), free(sc), free(ref);
        }
    return check_done();
}
