/* safetensors edge cases found by fuzzing: element alignment on write (tensors ordered by
 * element size) and on read (misaligned tensors copied), empty headers, NaN/Inf screening. */
#include <stdint.h>

#include "check.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "quant/finite.h"

/* u64 header length + header + data, as one buffer */
static size_t make_file(uint8_t *buf, const char *hdr, const void *data, size_t n) {
    uint64_t h = strlen(hdr);
    memcpy(buf, &h, 8);
    memcpy(buf + 8, hdr, h);
    if (n) memcpy(buf + 8 + h, data, n);
    return 8 + h + n;
}

int main(void) {
    const char *tmp = check_tmpdir("safetensors_robust");
    char path[1100];
    snprintf(path, sizeof path, "%s/a.safetensors", tmp);

    /* writer: a 3-element BF16 tensor named before an F32 one must not push it off 4-byte alignment */
    uint16_t b3[3] = {0x3f80, 0x4000, 0x4040};
    float f2[2] = {1.5f, -2.0f};
    double d1 = 3.25;
    st_writer w;
    st_writer_init(&w);
    st_writer_add(&w, "a.odd_bf16", DT_BF16, 1, (int64_t[]){3}, b3);
    st_writer_add(&w, "b.f32", DT_F32, 1, (int64_t[]){2}, f2);
    st_writer_add(&w, "c.f64", DT_F64, 1, (int64_t[]){1}, &d1);
    CHECK(st_writer_write(&w, path) == 0, "write: %s", gptq_last_error());
    st_writer_free(&w);
    st_archive a;
    CHECK(st_open_file(&a, path) == 0, "open: %s", gptq_last_error());
    CHECK(a.n_copies == 0, "our own file needed %d aligned copies", a.n_copies);
    const st_tensor *tf = st_find(&a, "b.f32"), *tb = st_find(&a, "a.odd_bf16"), *td = st_find(&a, "c.f64");
    CHECK(tf && (uintptr_t)tf->data % 4 == 0 && memcmp(tf->data, f2, 8) == 0, "F32 tensor misplaced");
    CHECK(td && (uintptr_t)td->data % 8 == 0 && memcmp(td->data, &d1, 8) == 0, "F64 tensor misplaced");
    CHECK(tb && memcmp(tb->data, b3, 6) == 0, "BF16 tensor misplaced");
    st_close(&a);

    /* reader: a header of odd length puts an F32 tensor at an odd address: read from an aligned copy */
    uint8_t buf[256];
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"; /* 55 bytes */
    size_t n = make_file(buf, hdr, f2, 8);
    CHECK(strlen(hdr) % 4 != 0, "test header is aligned by accident");
    CHECK(st_open_memory(&a, "odd.safetensors", buf, n) == 0, "odd header: %s", gptq_last_error());
    tf = st_find(&a, "x");
    CHECK(tf && (uintptr_t)tf->data % 4 == 0 && memcmp(tf->data, f2, 8) == 0 && a.n_copies == 1,
          "misaligned tensor not read from an aligned copy");
    st_close(&a);

    /* an empty header is a valid file with no tensors */
    n = make_file(buf, "{}", NULL, 0);
    CHECK(st_open_memory(&a, "empty.safetensors", buf, n) == 0 && a.n_tensors == 0 && !st_find(&a, "x"), "empty header");
    st_close(&a);

    /* NaN/Inf screening names the tensor and the element, for each float type */
    struct {
        const char *dtype;
        uint8_t bytes[8];
        int size;
        int bad;
    } cases[] = {
        {"F32", {0, 0, 0xc0, 0x7f}, 4, 1}, {"F32", {0, 0, 0x80, 0x7f}, 4, 1}, {"F32", {0xff, 0xff, 0x7f, 0x7f}, 4, 0},
        {"F16", {0x00, 0x7c}, 2, 1},       {"F16", {0xff, 0x7b}, 2, 0},       {"BF16", {0x80, 0xff}, 2, 1},
        {"BF16", {0x7f, 0x7f}, 2, 0},      {"F64", {0, 0, 0, 0, 0, 0, 0xf8, 0x7f}, 8, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t data[64] = {0};
        memcpy(data + 5 * cases[c].size, cases[c].bytes, cases[c].size); /* element [1, 2] of a 2x3 */
        char h[160];
        snprintf(h, sizeof h, "{\"m.w\":{\"dtype\":\"%s\",\"shape\":[2,3],\"data_offsets\":[0,%d]}}      ", cases[c].dtype,
                 6 * cases[c].size);
        n = make_file(buf, h, data, 6 * cases[c].size);
        CHECK(st_open_memory(&a, "f.safetensors", buf, n) == 0, "%s: %s", cases[c].dtype, gptq_last_error());
        int rc = st_check_finite(&a);
        if (cases[c].bad)
            CHECK(rc != 0 && strstr(gptq_last_error(), "f.safetensors: tensor 'm.w' element [1, 2] is not finite"),
                  "%s case %zu: %s", cases[c].dtype, c, rc ? gptq_last_error() : "accepted");
        else
            CHECK(rc == 0, "%s case %zu: finite value refused: %s", cases[c].dtype, c, gptq_last_error());
        st_close(&a);
    }
    return check_done();
}
