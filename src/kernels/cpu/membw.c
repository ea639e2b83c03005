#include "kernels/cpu/membw.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "kernels/cpu/cpu_features.h"

/* XOR of every 64-byte line of [p, p + n): wide loads, four independent chains so the
 * loop is bound by memory, not by the XOR latency. */
__attribute__((target("avx2"))) static uint64_t sweep_avx2(const char *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a);
    return out[0] ^ out[1] ^ out[2] ^ out[3];
}

static uint64_t sweep_scalar(const char *p, size_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    const uint64_t *q = (const uint64_t *)p;
    for (size_t i = 0; i + 4 <= n / 8; i += 4) a ^= q[i], b ^= q[i + 1], c ^= q[i + 2], d ^= q[i + 3];
    return a ^ b ^ c ^ d;
}

double membw_read_gbs(size_t bytes, int reps) {
    bytes &= ~(size_t)127;
    if (bytes < 128) bytes = 128;
    char *buf = xaligned_alloc(bytes);
    /* Touch every page from the threads that will read it (first-touch placement). */
    const int nt = omp_get_max_threads();
    const size_t per = (bytes / (size_t)nt) & ~(size_t)127;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        size_t b = (size_t)t * per, e = t == nt - 1 ? bytes : b + per;
        memset(buf + b, t + 1, e - b);
    }
    const int simd = cpu_get_features()->avx2;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t acc = 0;
        double t0 = now_seconds();
#pragma omp parallel num_threads(nt) reduction(^ : acc)
        {
            int t = omp_get_thread_num();
            size_t b = (size_t)t * per, e = t == nt - 1 ? bytes : b + per;
            acc ^= simd ? sweep_avx2(buf + b, e - b) : sweep_scalar(buf + b, e - b);
        }
        double dt = now_seconds() - t0;
        sink ^= acc;
        if (dt > 0 && bytes / dt / 1e9 > best) best = (double)bytes / dt / 1e9;
    }
    (void)sink;
    free(buf);
    return best;
}
