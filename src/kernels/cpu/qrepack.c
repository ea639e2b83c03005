/* Load-time repacking of GPTQ weights into the qk layout (kernels/cpu/qtypes.h): the
 * act-order input permutation with 32-aligned groups, the 64-byte code blocks, and the
 * per-row scales and zero points.  From checkpoint tensors or from a quant_layer. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/cpu/qmatmul.h"
#include "kernels/cpu/qmatmul_impl.h"
#include "quant/pack.h"

void qk_free(qk_layer *L) {
    if (!L) return;
    free(L->qw);
    free(L->scales);
    free(L->zeros);
    free(L->group_chunk);
    free(L->perm);
    memset(L, 0, sizeof *L);
}

int64_t qk_stream_bytes(const qk_layer *L) {
    return L->out * L->row_blocks * (int64_t)sizeof(qk_block) + L->out * L->groups * 3;
}

static int check_shape(int64_t out, int64_t in, int64_t groups, int bits, const char *who) {
    if (quant_check_bits(bits)) return gptq_fail_context("%s", who);
    if (out <= 0 || in <= 0 || groups <= 0 || out > INT_MAX || in > INT_MAX / 2 || groups > in)
        return gptq_fail("%s: bad shape (out %lld, in %lld, groups %lld)", who, (long long)out, (long long)in,
                         (long long)groups);
    if (in % QK_CHUNK != 0)
        return gptq_fail("%s: input features %lld are not a multiple of 32", who, (long long)in);
    return 0;
}

/* The kernel input order of g_idx (NULL: i / group_size): group_chunk, nchunks, in_pad,
 * perm (NULL when it is the identity).  Also sets the geometry fields of L. */
static int build_order(const int32_t *g_idx, int64_t in, int64_t groups, int group_size, int bits, qk_layer *L,
                       const char *who) {
    int64_t *count = xcalloc((size_t)groups, sizeof(int64_t));
    for (int64_t i = 0; i < in; i++) {
        int64_t g = g_idx ? g_idx[i] : group_size <= 0 ? 0 : i / group_size;
        if (g < 0 || g >= groups) {
            free(count);
            return gptq_fail("%s: input %lld is in group %lld, outside 0..%lld", who, (long long)i, (long long)g,
                             (long long)groups - 1);
        }
        count[g]++;
    }
    L->group_chunk = xmalloc(sizeof(int32_t) * (size_t)(groups + 1));
    L->group_chunk[0] = 0;
    for (int64_t g = 0; g < groups; g++)
        L->group_chunk[g + 1] = L->group_chunk[g] + (int32_t)((count[g] + QK_CHUNK - 1) / QK_CHUNK);
    L->groups = groups;
    L->nchunks = L->group_chunk[groups];
    L->in_pad = L->nchunks * QK_CHUNK;
    L->bits = bits;
    L->chunks_per_block = QK_CHUNKS_PER_BLOCK(bits);
    L->row_blocks = (L->nchunks + L->chunks_per_block - 1) / L->chunks_per_block;
    for (int k = 0; k < 16; k++)
        L->xfac[k] = (k < 2 * L->chunks_per_block && !qk_code_shifted(k, bits)) ? ldexpf(1.0f, -k * bits) : 1.0f;

    /* stable counting sort of the inputs by group, each group starting on a chunk */
    int32_t *perm = xmalloc(sizeof(int32_t) * (size_t)L->in_pad);
    for (int64_t p = 0; p < L->in_pad; p++) perm[p] = -1;
    for (int64_t g = 0; g < groups; g++) count[g] = (int64_t)L->group_chunk[g] * QK_CHUNK;
    int identity = L->in_pad == in;
    for (int64_t i = 0; i < in; i++) {
        int64_t g = g_idx ? g_idx[i] : group_size <= 0 ? 0 : i / group_size;
        int64_t p = count[g]++;
        perm[p] = (int32_t)i;
        identity &= p == i;
    }
    free(count);
    if (identity) {
        free(perm);
        perm = NULL;
    }
    L->perm = perm;
    L->act_order = perm != NULL;
    return 0;
}

/* One output row: codes in original input order -> the row's blocks. */
static void pack_row(const qk_layer *L, const uint8_t *codes, qk_block *dst) {
    memset(dst, 0, sizeof(qk_block) * (size_t)L->row_blocks);
    const int C = L->chunks_per_block, bits = L->bits;
    for (int64_t c = 0; c < L->nchunks; c++) {
        qk_block *b = dst + c / C;
        const int j = (int)(c % C);
        for (int t = 0; t < QK_CHUNK; t++) {
            int64_t p = c * QK_CHUNK + t;
            int64_t src = L->perm ? L->perm[p] : p;
            if (src < 0) continue;
            int k = 2 * j + t / QK_HALF;
            b->w[t % QK_HALF] |= (uint32_t)codes[src] << (k * bits);
        }
    }
}

static void alloc_arrays(qk_layer *L) {
    const size_t n = sizeof(qk_block) * (size_t)(L->out * L->row_blocks);
    L->qw = xaligned_alloc(n);
    /* Decode streams these once per token: 2 MiB pages spare the TLB misses of 4 KiB ones
     * (about 5% of decode speed where transparent huge pages are "madvise"). */
    if (n >= (4u << 20)) madvise((void *)(((uintptr_t)L->qw + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1)), n - (2u << 20),
                                 MADV_HUGEPAGE);
    L->scales = xmalloc(sizeof(uint16_t) * (size_t)(L->out * L->groups));
    L->zeros = xmalloc((size_t)(L->out * L->groups));
}

int qk_from_quant(const quant_layer *q, qk_layer *L) {
    memset(L, 0, sizeof *L);
    const char *who = "qk repack";
    if (check_shape(q->out, q->in, q->groups, q->bits, who)) return -1;
    const int64_t out = q->out, in = q->in, G = q->groups;
    const int maxq = quant_maxq(q->bits);
    for (int64_t k = 0; k < out * in; k++)
        if (q->codes[k] > maxq) return gptq_fail("%s: code %d exceeds %d for %d-bit weights", who, q->codes[k], maxq, q->bits);
    int32_t zmin = INT32_MAX, zmax = INT32_MIN;
    for (int64_t k = 0; k < G * out; k++) {
        if (q->zeros[k] < zmin) zmin = q->zeros[k];
        if (q->zeros[k] > zmax) zmax = q->zeros[k];
        float s = q->scales[k];
        if (f16_to_f32(f32_to_f16(s)) != s) return gptq_fail("%s: scale %g is not an fp16 value", who, (double)s);
    }
    int zero_base = zmax <= 255 ? 0 : 1;
    if (zmin < zero_base || zmax > 255 + zero_base)
        return gptq_fail("%s: zero points %d..%d do not fit 0..255 or 1..256", who, (int)zmin, (int)zmax);
    L->out = out;
    L->in = in;
    L->zero_base = zero_base;
    if (build_order(q->g_idx, in, G, q->group_size, q->bits, L, who)) {
        qk_free(L);
        return -1;
    }
    alloc_arrays(L);
#pragma omp parallel for schedule(static) if (out * in > QUANT_PAR_MIN)
    for (int64_t o = 0; o < out; o++) {
        pack_row(L, q->codes + o * in, L->qw + o * L->row_blocks);
        for (int64_t g = 0; g < G; g++) {
            L->scales[o * G + g] = f32_to_f16(q->scales[g * out + o]);
            L->zeros[o * G + g] = (uint8_t)(q->zeros[g * out + o] - zero_base);
        }
    }
    return 0;
}

int qk_from_gptq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, const int32_t *g_idx,
                 int64_t out, int64_t in, int64_t groups, int bits, int group_size, int zero_v2, qk_layer *L) {
    memset(L, 0, sizeof *L);
    const char *who = "qk repack";
    if (check_shape(out, in, groups, bits, who)) return -1;
    if (gptq_pack_check(out, in, bits)) return gptq_fail_context("%s", who);
    L->out = out;
    L->in = in;
    L->zero_base = zero_v2 ? 0 : 1;
    if (build_order(g_idx, in, groups, group_size, bits, L, who)) {
        qk_free(L);
        return -1;
    }
    alloc_arrays(L);
    const uint32_t *qw = (const uint32_t *)qweight, *qz = (const uint32_t *)qzeros;
    const int64_t zwords = out * bits / 32, runs = in / 32;
    const uint32_t maxq = (uint32_t)quant_maxq(bits);
    enum { ROWS = 16 }; /* rows unpacked together: qweight rows are contiguous over outputs */
    const int64_t nrb = (out + ROWS - 1) / ROWS;
#pragma omp parallel if (out * in > QUANT_PAR_MIN)
    {
        uint8_t *codes = xmalloc((size_t)(ROWS * in));
#pragma omp for schedule(static)
        for (int64_t rb = 0; rb < nrb; rb++) {
            const int64_t o0 = rb * ROWS, n = out - o0 < ROWS ? out - o0 : ROWS;
            for (int64_t r = 0; r < runs; r++) {
                for (int64_t d = 0; d < n; d++) {
                    uint32_t acc[9];
                    for (int b = 0; b < bits; b++) acc[b] = qw[(r * bits + b) * out + o0 + d];
                    acc[bits] = 0;
                    uint8_t *c = codes + d * in + r * 32;
                    for (int k = 0; k < 32; k++) { /* the little-endian bit stream of pack.h */
                        int pos = k * bits, word = pos >> 5, off = pos & 31;
                        uint32_t v = acc[word] >> off;
                        if (off + bits > 32) v |= acc[word + 1] << (32 - off);
                        c[k] = (uint8_t)(v & maxq);
                    }
                }
            }
            for (int64_t d = 0; d < n; d++) {
                const int64_t o = o0 + d;
                pack_row(L, codes + d * in, L->qw + o * L->row_blocks);
                for (int64_t g = 0; g < groups; g++) {
                    int64_t pos = o * bits, word = pos >> 5;
                    int off = (int)(pos & 31);
                    const uint32_t *zr = qz + g * zwords;
                    uint32_t v = zr[word] >> off;
                    if (off + bits > 32) v |= zr[word + 1] << (32 - off);
                    L->scales[o * groups + g] = scales[g * out + o];
                    L->zeros[o * groups + g] = (uint8_t)(v & maxq); /* the stored value; zero_base adds the rest */
                }
            }
        }
        free(codes);
    }
    return 0;
}
