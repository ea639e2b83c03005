/* Hugging Face GPTQ checkpoints (the format AutoGPTQ, GPTQModel, Transformers and vLLM
 * read): writing one from quantized layers, and reading quantized Linear layers back.
 *
 * Directory: config.json with "quantization_config", quantize_config.json (AutoGPTQ),
 * model.safetensors holding, per quantized Linear "<prefix>", the tensors
 * <prefix>.qweight / .qzeros / .scales / .g_idx (see quant/pack.h for their layout) and
 * every other tensor as in the source checkpoint, and the tokenizer files. */
#ifndef GPTQ_IO_GPTQ_CHECKPOINT_H
#define GPTQ_IO_GPTQ_CHECKPOINT_H

#include "io/hf_config.h"
#include "kernels/cpu/qtypes.h"
#include "io/safetensors.h"
#include "quant/pack.h"

/* What goes into quantization_config besides the per-layer tensors. */
typedef struct {
    int bits, group_size, desc_act, sym, static_groups, true_sequential, lm_head;
    float damp;
} gptq_ckpt_meta;

/* Writes a GPTQ checkpoint of the model in src_dir to out_dir.
 * packed[k] for k = layer*7 + linear (LIN_* order) and packed[n_layers*7] for lm_head:
 * a layer whose qweight is NULL is copied in float from the source.  module_names[k] is
 * the HF module name of packed[k].  The directory is built under a temporary name and
 * renamed when complete; an existing out_dir is an error unless force. */
int gptq_ckpt_write(const char *src_dir, const st_archive *src, const gptq_packed *packed, char *const *module_names,
                    int n_modules, const gptq_ckpt_meta *meta, const char *out_dir, int force);

/* Layer settings (bits, group size) come from quantization_config and its "dynamic"
 * per-module rules; g_idx may be absent (then input i is in group i / group_size).
 *
 * If the archive holds <prefix>.qweight, dequantizes that Linear (out, in) into a new
 * fp32 array *w (out, in) and returns 1; returns 0 if the layer is not quantized; -1 with
 * an error naming the file on inconsistent tensors. */
int gptq_ckpt_load_linear(const st_archive *st, const hf_quant_config *qc, const char *prefix, int64_t out, int64_t in,
                          float **w);

/* The same layer repacked for the fused kernels (kernels/cpu/qmatmul.h) without expanding
 * it to floats: 1 and *L filled, 0 if not quantized, -1 with an error naming the file.
 * The source tensors' mapped pages are released afterwards. */
int gptq_ckpt_load_qk(const st_archive *st, const hf_quant_config *qc, const char *prefix, int64_t out, int64_t in,
                      qk_layer *L);

#endif
