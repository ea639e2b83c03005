#!/usr/bin/env bash
# NaN/Inf in weights or in calibration activations: `gptq quantize` stops with one error
# line naming the tensor or the layer, exits non-zero and writes nothing.  Corrupted copies
# of stories260K: a NaN in a quantized Linear, an Inf in a norm, a NaN in the embeddings
# (tensors RTN does not quantize and would otherwise copy), and finite weights whose
# activations overflow (only the calibration pass can see that).
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/nonfinite
rm -rf "$W" && mkdir -p "$W"
SRC=$SHARED/models/stories260K
CAL=$SHARED/data/calib/calib_mix.txt

# corrupt NAME TENSOR FIRST COUNT VALUE: a copy of the model with COUNT elements of TENSOR
# (F32), from element FIRST on, set to VALUE
corrupt() {
  mkdir -p "$W/$1"
  cp "$SRC"/config.json "$SRC"/tokenizer.json "$SRC"/tokenizer_config.json "$SRC"/model.safetensors "$W/$1/"
  python3 - "$W/$1/model.safetensors" "$2" "$3" "$4" "$5" <<'PY'
import json, struct, sys
p, name, first, count, val = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
t = json.loads(b[8:8 + n])[name]; assert t['dtype'] == 'F32'
for i in range(first, first + count):
    o = 8 + n + t['data_offsets'][0] + 4 * i
    b[o:o + 4] = struct.pack('<f', val)
open(p, 'wb').write(b)
PY
}

# quantize_fails DESC PATTERN MODEL ARGS...: non-zero exit, an error line matching PATTERN
# as the last line on stderr (warnings may come before it), no output directory
quantize_fails() {
  local d=$1 pat=$2 model=$3; shift 3
  local out=$W/out-$model err rc
  rm -rf "$out"
  err=$("$BIN" quantize --model "$W/$model" --out "$out" "$@" 2>&1 >/dev/null); rc=$?
  local last
  last=$(printf '%s\n' "$err" | tail -n 1)
  if [ $rc -eq 0 ]; then bad "$d: exit code 0"; return; fi
  if [ $rc -ge 128 ]; then bad "$d: crashed (exit $rc): $err"; return; fi
  if ! printf '%s' "$last" | grep -Eq -- "^gptq: error: .*$pat"; then bad "$d: message '$last' does not match /$pat/"; return; fi
  # (OUT.partial, the resumable state of blocks finished before the error, may stay)
  if [ -e "$out" ] || ls -d "$out".tmp.* >/dev/null 2>&1; then bad "$d: left $(ls -d "$out"*) behind"; return; fi
  ok
}

GPTQ_ARGS=(--calib "$CAL" --nsamples 4 --seqlen 32)

corrupt wnan model.layers.2.self_attn.v_proj.weight 100 1 nan
quantize_fails "NaN in a Linear weight (RTN)" "tensor 'model\.layers\.2\.self_attn\.v_proj\.weight' element \[1, 36\] is not finite" wnan --method rtn
quantize_fails "NaN in a Linear weight (GPTQ)" "model\.layers\.2\.self_attn\.v_proj\.weight' element \[1, 36\] is not finite" wnan "${GPTQ_ARGS[@]}"
# model-written calibration would run the broken model first: the check comes before it
quantize_fails "NaN in a Linear weight (GPTQ, auto calibration)" "model\.layers\.2\.self_attn\.v_proj\.weight' .* not finite" wnan --nsamples 2 --seqlen 16

corrupt ninf model.layers.1.post_attention_layernorm.weight 3 1 inf
quantize_fails "Inf in a norm (RTN)" "tensor 'model\.layers\.1\.post_attention_layernorm\.weight' element \[3\] is not finite" ninf --method rtn
quantize_fails "Inf in a norm (GPTQ)" "model\.layers\.1\.post_attention_layernorm\.weight' element \[3\] is not finite" ninf "${GPTQ_ARGS[@]}"

corrupt enan model.embed_tokens.weight $((300 * 64 + 5)) 1 nan
quantize_fails "NaN in the embeddings (RTN)" "tensor 'model\.embed_tokens\.weight' element \[300, 5\] is not finite" enan --method rtn

# finite weights, activations that overflow to Inf: named by the layer whose input it is
corrupt overflow model.layers.1.post_attention_layernorm.weight 0 64 3e38
quantize_fails "activations overflow (GPTQ)" "model\.layers\.1\.mlp\.gate_proj input: calibration activations are not finite" overflow "${GPTQ_ARGS[@]}"

# the clean model still quantizes (the checks do not fire on good weights)
check "clean model quantizes" "$BIN" quantize --model "$SRC" --out "$W/clean" --method rtn
finish
