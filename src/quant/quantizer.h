/* The quantization grid shared by RTN and GPTQ (what AutoGPTQ's Quantizer.find_params
 * and quantize() do for weights, per output row), and the quantized-layer container both
 * produce and the packer consumes.
 *
 * Grid for one row segment x, with maxq = 2^bits - 1:
 *   xmin = min(0, min x), xmax = max(0, max x)
 *   sym:  xmax = max(|xmin|, xmax); xmin = -xmax if xmin < 0
 *   xmin == xmax == 0  ->  xmin = -1, xmax = +1
 *   scale = fp16((xmax - xmin) / maxq)                   (see "fp16 scales" below)
 *   zero  = sym ? (maxq + 1) / 2 : clamp(round(-xmin / scale), 0, maxq)
 *   q     = clamp(round(x / scale) + zero, 0, maxq),  dequant = scale * (q - zero)
 * Arithmetic is fp32 with the same operations as the reference (x / scale is a division,
 * not a multiplication by 1/scale) and round() is round-half-to-even like torch.round
 * (nearbyintf in the default rounding mode).
 *
 * fp16 scales: the checkpoint stores scales as fp16.  AutoGPTQ quantizes with the fp32
 * scale and stores its fp16 rounding, so the saved model is not exactly the model whose
 * error it measured.  We round the scale to fp16 (nearest-even) *before* computing the
 * zero point and the codes, so scale * (q - zero) evaluated in fp32 from the checkpoint
 * reproduces the dequantized weight bit for bit.  A scale that rounds to fp16 zero is
 * replaced by the smallest fp16 subnormal (2^-24) and one that overflows by 65504, so the
 * grid always stays finite and invertible.
 *
 * GPTQ v1 zero points: the HF "gptq" checkpoint format stores zero - 1 in `bits` bits and
 * loaders add 1 back, so a zero point of 0 (possible for asym groups whose minimum is
 * above -scale/2) cannot be stored: AutoGPTQ silently writes it as maxq and every loader
 * then reads maxq + 1.  With v1_zero set, asym zero points are clamped to >= 1 instead
 * (the grid moves down by one step for those rare groups), so the checkpoint is exact.
 * Without it the grid matches AutoGPTQ exactly and the packer refuses zero == 0.
 *
 * MSE grids (mse = 1, the reference Quantizer's mse option): instead of the full range,
 * the range [p·xmin, p·xmax] for p = 1, 0.99, ..., 0.21 whose grid gives the least
 * squared rounding error over the segment (the reference uses |err|^2.4; the square is
 * cheaper and chooses nearly the same clipping).  Clipping a few outliers buys a finer
 * step for every other weight, which pays at 2 and 3 bits. */
#ifndef GPTQ_QUANT_QUANTIZER_H
#define GPTQ_QUANT_QUANTIZER_H

#include <math.h>
#include <stdint.h>

/* How a weight is quantized: bit width, symmetric or not, v1 zero clamp (see above). */
typedef struct {
    int bits;    /* 2, 3, 4 or 8 */
    int sym;     /* 1: symmetric grid, zero = 2^(bits-1) */
    int v1_zero; /* 1: asym zero points clamped to >= 1 (GPTQ v1 checkpoint) */
    int mse;     /* 1: shrink the range to the grid with the least squared error (below) */
} quant_grid;

/* 0 if bits is one of 2, 3, 4, 8; otherwise -1 and an error. */
int quant_check_bits(int bits);

/* Element count below which our loops stay on one thread: on small problems (and on
 * shared, busy cores) an OpenMP fork costs more than it saves. */
#define QUANT_PAR_MIN 65536

static inline int quant_maxq(int bits) { return (1 << bits) - 1; }

/* Number of groups of `group_size` columns in `in` columns (the last one may be shorter);
 * group_size <= 0 means one group per row. */
static inline int64_t quant_num_groups(int64_t in, int group_size) {
    return group_size <= 0 ? 1 : (in + group_size - 1) / group_size;
}

/* Grid of one row segment x (n values, n >= 0): scale (exactly an fp16 value) and zero. */
void quant_row_params(const float *x, int64_t n, const quant_grid *g, float *scale, int32_t *zero);

/* Grid of each row r in [0, rows) over columns [c0, c1) of a row-major matrix w with
 * leading dimension ld, into scale[r * stride] and zero[r * stride].
 *   w     (rows, ld)
 *   scale (rows) elements `stride` apart (1 for one row of a (groups, out) array)
 *   zero  (rows) likewise */
void quant_find_params(const float *w, int64_t rows, int64_t ld, int64_t c0, int64_t c1, const quant_grid *g,
                       float *scale, int32_t *zero, int64_t stride);

/* Quantizes one value on the grid (scale, zero, maxq): stores the code in *code and
 * returns the dequantized value scale * (q - zero). */
static inline float quant_one(float x, float scale, int32_t zero, int maxq, uint8_t *code) {
    float z = (float)zero;
    float q = nearbyintf(x / scale) + z;
    if (q < 0.0f) q = 0.0f;
    if (q > (float)maxq) q = (float)maxq;
    if (!(q == q)) q = z; /* NaN input: the grid's zero (never produced from finite input) */
    *code = (uint8_t)q;
    return scale * (q - z);
}

/* A quantized Linear weight, as RTN and GPTQ return it and pack.h stores it. */
typedef struct {
    int64_t out, in;
    int bits;
    int group_size;  /* as requested: > 0 columns per group, or -1 for one group per row */
    int64_t groups;  /* quant_num_groups(in, group_size) */
    uint8_t *codes;  /* (out, in) integer codes 0..maxq, original column order */
    float *scales;   /* (groups, out) fp16-exact scales */
    int32_t *zeros;  /* (groups, out) integer zero points (the real zero, not zero - 1) */
    int32_t *g_idx;  /* (in) group index of each input column */
    float *wq;       /* (out, in) dequantized weight scales[g_idx[i]][o] * (codes[o][i] - zeros[g_idx[i]][o]), or NULL */
} quant_layer;

/* Allocates the arrays of q for (out, in, bits, group_size); wq too if with_wq.
 * Contents are uninitialized. */
void quant_layer_alloc(quant_layer *q, int64_t out, int64_t in, int bits, int group_size, int with_wq);
void quant_layer_free(quant_layer *q);

/* Fills q->wq (allocating it if NULL) from codes, scales, zeros and g_idx. */
void quant_layer_dequantize(quant_layer *q);

#endif
