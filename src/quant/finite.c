#include "quant/finite.h"

#include <math.h>
#include <string.h>

#include "core/error.h"

/* Index of the first non-finite element of t, or -1. */
static int64_t first_bad(const st_tensor *t) {
    const int64_t n = t->numel;
    int64_t bad = -1;
    /* Exponent bits all ones = Inf or NaN, for each format (no float conversion needed). */
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
        int nonfinite;
        switch (t->dtype) {
        case DT_F32: {
            uint32_t u;
            memcpy(&u, (const char *)t->data + 4 * i, 4);
            nonfinite = (u & 0x7f800000u) == 0x7f800000u;
            break;
        }
        case DT_F16: {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            nonfinite = (h & 0x7c00u) == 0x7c00u;
            break;
        }
        case DT_BF16: {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            nonfinite = (h & 0x7f80u) == 0x7f80u;
            break;
        }
        default: { /* DT_F64 */
            double d;
            memcpy(&d, (const char *)t->data + 8 * i, 8);
            nonfinite = !isfinite(d);
        }
        }
        if (nonfinite) {
#pragma omp critical
            if (bad < 0 || i < bad) bad = i;
        }
    }
    return bad;
}

int st_check_finite(const st_archive *a) {
    for (int k = 0; k < a->n_tensors; k++) {
        const st_tensor *t = &a->tensors[k];
        if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16 && t->dtype != DT_F64) continue;
        int64_t bad = first_bad(t);
        if (bad < 0) continue;
        /* the element as indices: [i, j] for a matrix */
        char where[96] = "";
        int64_t rem = bad;
        for (int d = t->ndim - 1; d >= 0; d--) {
            char tmp[96];
            int64_t dim = t->shape[d] ? t->shape[d] : 1;
            snprintf(tmp, sizeof tmp, "%lld%s%s", (long long)(rem % dim), d == t->ndim - 1 ? "" : ", ", where);
            snprintf(where, sizeof where, "%s", tmp);
            rem /= dim;
        }
        return gptq_fail("%s: tensor '%s' element [%s] is not finite (NaN/Inf)", a->paths[t->file_index], t->name, where);
    }
    return 0;
}
