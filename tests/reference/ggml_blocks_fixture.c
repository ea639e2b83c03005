/* Writes tests/fixtures/ggml_blocks.bin: rows of test values, and what ggml itself makes of
 * them for every block type we write (its reference quantizer, reached through
 * ggml_quantize_chunk without an importance matrix, exactly as llama-quantize calls it)
 * and what its dequantizer gives back.  Built and run by make_ggml_fixtures.sh against a
 * llama.cpp checkout; CI only reads the frozen file (tests/unit/test_ggml_quants.c).
 *
 * File: "GGBF" u32 version(1) u32 nrows u32 ne0, f32 input[nrows][ne0], u32 ntypes, then per
 * type: u32 ggml_type, u32 nbytes, u8 quantized[nbytes], f32 dequantized[nrows][ne0]. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

#define NROWS 8
#define NE0 256

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double uniform(void) { /* xorshift64*, [0, 1) */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2.0 * log(1.0 - uniform())) * cos(6.283185307179586 * uniform()); }

static void make_rows(float *x) {
    for (int r = 0; r < NROWS; r++)
        for (int i = 0; i < NE0; i++) {
            float *v = &x[r * NE0 + i];
            switch (r) {
            case 0: *v = (float)(0.02 * gauss()); break;                          /* weight-like */
            case 1: *v = (float)(uniform() * 2 - 1); break;                        /* uniform */
            case 2: *v = (float)(0.01 * gauss() + (i % 97 == 5 ? 0.8 : 0)); break;  /* outliers */
            case 3: *v = i < 64 ? 0.0f : (float)(0.05 * gauss()); break;          /* zero sub-blocks */
            case 4: *v = (i / 32) % 2 ? 0.25f : -0.125f; break;                   /* constant blocks */
            case 5: *v = (float)(1e-6 * gauss()); break;                           /* tiny: fp16 subnormal scales */
            case 6: *v = (float)(300.0 * gauss()); break;                          /* large */
            case 7: *v = (float)fabs(0.03 * gauss()) + (i % 2 ? 0.01f : 0.0f); break; /* all positive */
            }
        }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.bin\n", argv[0]);
        return 2;
    }
    static float x[NROWS * NE0], y[NROWS * NE0];
    /* ggml_init fills ggml's fp16 -> fp32 table, which its quantizers read */
    struct ggml_init_params ip = {.mem_size = 1 << 16, .mem_buffer = NULL, .no_alloc = true};
    ggml_free(ggml_init(ip));
    make_rows(x);
    const enum ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
                                    GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    const uint32_t ntypes = sizeof types / sizeof types[0];
    FILE *f = fopen(argv[1], "wb");
    if (!f) return 1;
    uint32_t hdr[3] = {1, NROWS, NE0};
    fwrite("GGBF", 1, 4, f);
    fwrite(hdr, 4, 3, f);
    fwrite(x, 4, NROWS * NE0, f);
    fwrite(&ntypes, 4, 1, f);
    for (uint32_t k = 0; k < ntypes; k++) {
        size_t nbytes = ggml_row_size(types[k], NE0) * NROWS;
        void *q = calloc(1, nbytes);
        ggml_quantize_chunk(types[k], x, q, 0, NROWS, NE0, NULL);
        ggml_get_type_traits(types[k])->to_float(q, y, NROWS * NE0);
        uint32_t t = types[k], nb = (uint32_t)nbytes;
        fwrite(&t, 4, 1, f);
        fwrite(&nb, 4, 1, f);
        fwrite(q, 1, nbytes, f);
        fwrite(y, 4, NROWS * NE0, f);
        free(q);
    }
    return fclose(f) != 0;
}
