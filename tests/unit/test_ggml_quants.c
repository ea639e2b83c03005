/* llama.cpp block formats: our reference quantizers and dequantizers against ggml's own
 * (tests/fixtures/ggml_blocks.bin, written by tests/reference/make_ggml_fixtures.sh), byte
 * for byte and bit for bit; and the per-block grid used by GPTQ (fit, then code each
 * value) reproducing the reference when the values do not change. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/fs.h"
#include "io/ggml_types.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_quants.h"

static uint32_t rd32(const unsigned char **p) {
    uint32_t v;
    memcpy(&v, *p, 4);
    *p += 4;
    return v;
}

int main(void) {
    size_t len;
    char *file = fs_read_all(check_src("tests/fixtures/ggml_blocks.bin"), &len);
    CHECK(file != NULL, "fixture missing");
    if (!file) return check_done();
    const unsigned char *p = (const unsigned char *)file;
    CHECK(memcmp(p, "GGBF", 4) == 0, "magic");
    p += 4;
    uint32_t version = rd32(&p), nrows = rd32(&p), ne0 = rd32(&p);
    CHECK(version == 1, "version %u", version);
    const float *x = (const float *)p;
    p += sizeof(float) * nrows * ne0;
    uint32_t ntypes = rd32(&p);
    CHECK(ntypes == 10, "%u types", ntypes);
    float *deq = malloc(sizeof(float) * nrows * ne0), *gv = malloc(sizeof(float) * ne0);
    for (uint32_t k = 0; k < ntypes; k++) {
        ggml_type t = (ggml_type)rd32(&p);
        uint32_t nbytes = rd32(&p);
        const unsigned char *want = p;
        p += nbytes;
        const float *want_deq = (const float *)p;
        p += sizeof(float) * nrows * ne0;
        const ggml_type_traits *tr = ggml_traits(t);
        CHECK(tr && ggml_row_size(t, ne0) * nrows == nbytes, "type %u size", t);
        if (!tr) continue;
        unsigned char *got = malloc(nbytes);
        ggml_quantize_rows(t, x, nrows, ne0, got);
        for (uint32_t r = 0; r < nrows; r++) {
            size_t rb = ggml_row_size(t, ne0);
            CHECK(memcmp(got + r * rb, want + r * rb, rb) == 0, "%s row %u: quantized bytes differ from ggml's", tr->name, r);
        }
        ggml_dequantize_rows(t, want, nrows, ne0, deq);
        CHECK(memcmp(deq, want_deq, sizeof(float) * nrows * ne0) == 0, "%s: dequantized values differ from ggml's", tr->name);

        /* the GPTQ grid: fit each block, code each value; with unchanged values the K-quants
         * give the reference bytes, every format returns exactly the value it stores */
        unsigned char *blk = malloc((size_t)tr->type_size);
        int same_bytes = 1, values_ok = 1, near = 1;
        for (uint32_t r = 0; r < nrows; r++)
            for (uint32_t b = 0; b < ne0 / (uint32_t)tr->block_size; b++) {
                const float *xb = x + (size_t)r * ne0 + (size_t)b * tr->block_size;
                ggml_block_fit(t, xb, blk);
                for (int i = 0; i < tr->block_size; i++) gv[i] = ggml_block_quant(t, blk, i, xb[i]);
                float back[256];
                ggml_dequantize_rows(t, blk, 1, tr->block_size, back);
                for (int i = 0; i < tr->block_size; i++) {
                    values_ok &= back[i] == gv[i];
                    /* the nearest grid point is never worse than the reference's choice */
                    const float *ref = want_deq + (size_t)r * ne0 + (size_t)b * tr->block_size;
                    if (tr->block_size == 32) near &= fabsf(gv[i] - xb[i]) <= fabsf(ref[i] - xb[i]) * (1 + 1e-6f) + 1e-30f;
                }
                if (tr->block_size == QK_K)
                    same_bytes &= memcmp(blk, want + (size_t)r * ggml_row_size(t, ne0) + (size_t)b * tr->type_size,
                                         (size_t)tr->type_size) == 0;
            }
        CHECK(values_ok, "%s: ggml_block_quant returns a value the block does not hold", tr->name);
        CHECK(same_bytes, "%s: fit + code differs from the reference quantizer", tr->name);
        CHECK(near, "%s: block grid coding is further from a value than the reference's", tr->name);
        free(blk);
        free(got);
    }
    CHECK((size_t)(p - (const unsigned char *)file) == len, "trailing bytes in the fixture");
    free(deq);
    free(gv);
    free(file);
    return check_done();
}
