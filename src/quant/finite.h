/* NaN/Inf screening of a checkpoint before quantization.
 *
 * quantize_model checks the weights it quantizes (naming the Linear) and the calibration
 * activations of every block (naming the layer whose input went bad).  That misses float
 * tensors it does not quantize — embeddings, norms, biases, a tied lm_head — which RTN
 * would copy into the output as they are, and which model-written calibration would run
 * before any check.  This screens every float tensor of the archive up front. */
#ifndef GPTQ_QUANT_FINITE_H
#define GPTQ_QUANT_FINITE_H

#include "io/safetensors.h"

/* 0 if every F32/F16/BF16/F64 element of the archive is finite; otherwise -1 and an error
 * naming the file, the tensor and the first bad element. */
int st_check_finite(const st_archive *a);

#endif
