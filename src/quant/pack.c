#include "quant/pack.h"

#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/error.h"

/* Value k of a little-endian bit stream of `bits`-bit values in 32-bit words that lie
 * `stride` words apart (pack.h). */
static inline void stream_put(uint32_t *w, int64_t stride, int64_t k, int bits, uint32_t v) {
    int64_t pos = k * bits, word = pos >> 5;
    int off = (int)(pos & 31);
    w[word * stride] |= v << off;
    if (off + bits > 32) w[(word + 1) * stride] |= v >> (32 - off);
}

static inline uint32_t stream_get(const uint32_t *w, int64_t stride, int64_t k, int bits) {
    int64_t pos = k * bits, word = pos >> 5;
    int off = (int)(pos & 31);
    uint32_t v = w[word * stride] >> off;
    if (off + bits > 32) v |= w[(word + 1) * stride] << (32 - off);
    return v & (uint32_t)quant_maxq(bits);
}

int gptq_pack_check(int64_t out, int64_t in, int bits) {
    if (quant_check_bits(bits)) return -1;
    if (out <= 0 || in <= 0) return gptq_fail("gptq pack: bad shape (%lld, %lld)", (long long)out, (long long)in);
    if (in % 32 != 0)
        return gptq_fail("gptq pack: input features %lld are not a multiple of 32 (required by the GPTQ format)",
                         (long long)in);
    if ((out * bits) % 32 != 0)
        return gptq_fail("gptq pack: output features %lld times %d bits is not a multiple of 32 (qzeros cannot be packed)",
                         (long long)out, bits);
    return 0;
}

int gptq_pack_qweight(const uint8_t *codes, int64_t out, int64_t in, int bits, int32_t *qweight) {
    if (gptq_pack_check(out, in, bits)) return -1;
    const int maxq = quant_maxq(bits);
    int bad = 0;
    uint32_t *qw = (uint32_t *)qweight;
    const int64_t runs = in / 32;
#pragma omp parallel for schedule(static) reduction(| : bad) if (out * in > QUANT_PAR_MIN)
    for (int64_t r = 0; r < runs; r++) {
        for (int64_t o = 0; o < out; o++) {
            uint32_t acc[8] = {0};
            const uint8_t *c = codes + o * in + r * 32;
            for (int k = 0; k < 32; k++) {
                bad |= c[k] > maxq;
                stream_put(acc, 1, k, bits, c[k] & (uint32_t)maxq);
            }
            for (int b = 0; b < bits; b++) qw[(r * bits + b) * out + o] = acc[b];
        }
    }
    if (bad) return gptq_fail("gptq pack: a code exceeds %d for %d-bit weights", maxq, bits);
    return 0;
}

void gptq_unpack_qweight(const int32_t *qweight, int64_t out, int64_t in, int bits, uint8_t *codes) {
    const uint32_t *qw = (const uint32_t *)qweight;
    const int64_t runs = in / 32;
#pragma omp parallel for schedule(static) if (out * in > QUANT_PAR_MIN)
    for (int64_t o = 0; o < out; o++) {
        for (int64_t r = 0; r < runs; r++) {
            uint32_t acc[8];
            for (int b = 0; b < bits; b++) acc[b] = qw[(r * bits + b) * out + o];
            uint8_t *c = codes + o * in + r * 32;
            for (int k = 0; k < 32; k++) c[k] = (uint8_t)stream_get(acc, 1, k, bits);
        }
    }
}

int gptq_pack_qzeros(const int32_t *zeros, int64_t groups, int64_t out, int bits, int32_t *qzeros) {
    if (quant_check_bits(bits)) return -1;
    if ((out * bits) % 32 != 0)
        return gptq_fail("gptq pack: output features %lld times %d bits is not a multiple of 32 (qzeros cannot be packed)",
                         (long long)out, bits);
    const int maxq = quant_maxq(bits);
    const int64_t words = out * bits / 32;
    uint32_t *qz = (uint32_t *)qzeros;
    memset(qz, 0, sizeof(uint32_t) * (size_t)(groups * words));
    for (int64_t g = 0; g < groups; g++) {
        for (int64_t o = 0; o < out; o++) {
            int32_t z = zeros[g * out + o];
            if (z < 1 || z > maxq + 1)
                return gptq_fail("gptq pack: zero point %d (group %lld, output %lld) cannot be stored in the v1 GPTQ "
                                 "format (zero - 1 in %d bits; quantize with v1_zero)",
                                 (int)z, (long long)g, (long long)o, bits);
            stream_put(qz + g * words, 1, o, bits, (uint32_t)(z - 1) & (uint32_t)maxq);
        }
    }
    return 0;
}

void gptq_unpack_qzeros(const int32_t *qzeros, int64_t groups, int64_t out, int bits, int32_t *zeros) {
    const int64_t words = out * bits / 32;
    const uint32_t *qz = (const uint32_t *)qzeros;
    for (int64_t g = 0; g < groups; g++)
        for (int64_t o = 0; o < out; o++) zeros[g * out + o] = (int32_t)stream_get(qz + g * words, 1, o, bits) + 1;
}

static int check_g_idx(const int32_t *g_idx, int64_t in, int64_t groups) {
    for (int64_t i = 0; i < in; i++)
        if (g_idx[i] < 0 || g_idx[i] >= groups)
            return gptq_fail("gptq: g_idx[%lld] = %d is outside 0..%lld", (long long)i, (int)g_idx[i],
                             (long long)groups - 1);
    return 0;
}

int gptq_pack(const quant_layer *q, gptq_packed *pk) {
    memset(pk, 0, sizeof *pk);
    if (gptq_pack_check(q->out, q->in, q->bits)) return -1;
    if (check_g_idx(q->g_idx, q->in, q->groups)) return -1;
    const int64_t out = q->out, in = q->in, G = q->groups;
    pk->out = out;
    pk->in = in;
    pk->groups = G;
    pk->bits = q->bits;
    pk->group_size = q->group_size;
    pk->qweight = xaligned_alloc(sizeof(int32_t) * (size_t)(in / 32 * q->bits * out));
    pk->qzeros = xmalloc(sizeof(int32_t) * (size_t)(G * (out * q->bits / 32)));
    pk->scales = xmalloc(sizeof(uint16_t) * (size_t)(G * out));
    pk->g_idx = xmalloc(sizeof(int32_t) * (size_t)in);
    memcpy(pk->g_idx, q->g_idx, sizeof(int32_t) * (size_t)in);
    for (int64_t k = 0; k < G * out; k++) {
        uint16_t hs = f32_to_f16(q->scales[k]);
        if (f16_to_f32(hs) != q->scales[k]) {
            gptq_packed_free(pk);
            return gptq_fail("gptq pack: scale %g (group %lld, output %lld) is not an fp16 value", (double)q->scales[k],
                             (long long)(k / out), (long long)(k % out));
        }
        pk->scales[k] = hs;
    }
    if (gptq_pack_qweight(q->codes, out, in, q->bits, pk->qweight) ||
        gptq_pack_qzeros(q->zeros, G, out, q->bits, pk->qzeros)) {
        gptq_packed_free(pk);
        return -1;
    }
    return 0;
}

int gptq_unpack(const gptq_packed *pk, quant_layer *q, int with_wq) {
    memset(q, 0, sizeof *q);
    if (gptq_pack_check(pk->out, pk->in, pk->bits)) return -1;
    if (pk->groups <= 0) return gptq_fail("gptq unpack: bad group count %lld", (long long)pk->groups);
    if (check_g_idx(pk->g_idx, pk->in, pk->groups)) return -1;
    quant_layer_alloc(q, pk->out, pk->in, pk->bits, pk->group_size, 0);
    q->groups = pk->groups; /* what the tensors hold, even if group_size says otherwise */
    free(q->scales);
    free(q->zeros);
    q->scales = xmalloc(sizeof(float) * (size_t)(q->groups * q->out));
    q->zeros = xmalloc(sizeof(int32_t) * (size_t)(q->groups * q->out));
    gptq_unpack_qweight(pk->qweight, pk->out, pk->in, pk->bits, q->codes);
    gptq_unpack_qzeros(pk->qzeros, pk->groups, pk->out, pk->bits, q->zeros);
    for (int64_t k = 0; k < pk->groups * pk->out; k++) q->scales[k] = f16_to_f32(pk->scales[k]);
    memcpy(q->g_idx, pk->g_idx, sizeof(int32_t) * (size_t)pk->in);
    if (with_wq) quant_layer_dequantize(q);
    return 0;
}

void gptq_packed_free(gptq_packed *pk) {
    free(pk->qweight);
    free(pk->qzeros);
    free(pk->scales);
    free(pk->g_idx);
    pk->qweight = NULL;
    pk->qzeros = NULL;
    pk->scales = NULL;
    pk->g_idx = NULL;
}

int gptq_dequantize(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                    int64_t out, int64_t in, int64_t groups, int bits, float *w) {
    if (gptq_pack_check(out, in, bits)) return -1;
    if (groups <= 0) return gptq_fail("gptq dequantize: bad group count %lld", (long long)groups);
    if (check_g_idx(g_idx, in, groups)) return -1;
    const uint32_t *qw = (const uint32_t *)qweight, *qz = (const uint32_t *)qzeros;
    const int64_t zwords = out * bits / 32, runs = in / 32;
#pragma omp parallel for schedule(static) if (out * in > QUANT_PAR_MIN)
    for (int64_t o = 0; o < out; o++) {
        float *wr = w + o * in;
        for (int64_t r = 0; r < runs; r++) {
            uint32_t acc[8];
            for (int b = 0; b < bits; b++) acc[b] = qw[(r * bits + b) * out + o];
            for (int k = 0; k < 32; k++) {
                int64_t i = r * 32 + k, g = g_idx[i];
                float s = f16_to_f32(scales[g * out + o]);
                float z = (float)((int32_t)stream_get(qz + g * zwords, 1, o, bits) + 1);
                wr[i] = s * ((float)stream_get(acc, 1, k, bits) - z);
            }
        }
    }
    return 0;
}

int64_t gptq_storage_bits(int64_t out, int64_t in, int bits, int group_size, int with_g_idx) {
    int64_t G = quant_num_groups(in, group_size);
    int64_t qweight = (in * bits + 31) / 32 * 32 * out;
    int64_t qzeros = G * ((out * bits + 31) / 32) * 32;
    int64_t scales = G * out * 16;
    int64_t gidx = with_g_idx ? 32 * in : 0;
    return qweight + qzeros + scales + gidx;
}

double gptq_bits_per_weight(int64_t out, int64_t in, int bits, int group_size, int with_g_idx) {
    return (double)gptq_storage_bits(out, in, bits, group_size, with_g_idx) / ((double)out * (double)in);
}
