#!/usr/bin/env bash
# fused: GPTQ checkpoints run through the fused packed-weight kernels give the same
# perplexity as the reference path that dequantizes them to fp32 on load (--dequantize),
# for 2/3/4/8 bits, act-order or not, sym and asym, every CPU path, and mixed per-module
# settings ("dynamic" overrides, as GPTQModel writes them).
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/fused
rm -rf "$W" && mkdir -p "$W"
B=$SHARED/models/llama-bpe-26m
CAL=$SHARED/data/calib/calib_mix.txt
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
here=$(dirname "$0")

ppl() { "$BIN" perplexity --model "$@" --data "$WIKI" --ctx 128 --max-windows 3 --json 2>/dev/null | tail -1 |
        python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])"; }
same() { python3 -c "import sys; a, b = $1, $2; sys.exit(0 if abs(a - b) <= 5e-4 * b else 1)"; }

for cfg in "2 64 --act-order --asym" "3 128 --act-order --sym" "4 128 --no-act-order --asym" "8 32 --act-order --sym"; do
  set -- $cfg
  d=$W/b-$1-$2
  "$BIN" quantize --model "$B" --out "$d" --bits "$1" --group "$2" $3 $4 --calib "$CAL" --nsamples 4 --seqlen 64 >/dev/null 2>"$d.err"
  check "quantize $cfg" test -f "$d/model.safetensors"
  ref=$(ppl "$d" --dequantize); f=$(ppl "$d")
  check "fused ppl $f == dequantized $ref within 0.05% ($cfg)" same "$f" "$ref"
done
# every SIMD path the CPU has, on the act-order 3-bit checkpoint (the hardest layout)
ref=$(ppl "$W/b-3-128" --dequantize)
for path in scalar avx2; do
  f=$(GPTQ_CPU=$path ppl "$W/b-3-128")
  check "GPTQ_CPU=$path: fused ppl $f == $ref" same "$f" "$ref"
done

# checkpoint_format "gptq_v2": the same 4-bit layers with zero points stored as they are
cp -r "$W/b-4-128" "$W/v2"
python3 - "$W/v2" <<'PY'
import json, os, struct, sys
import numpy as np
d = sys.argv[1]; path = os.path.join(d, "model.safetensors")
raw = bytearray(open(path, "rb").read()); n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
for name, t in hdr.items():
    if name.endswith(".qzeros"):
        b, e = t["data_offsets"]; b += 8 + n; e += 8 + n
        w = np.frombuffer(bytes(raw[b:e]), dtype="<u4")
        nib = [((w >> (4 * k)) & 15) + 1 for k in range(8)]
        assert all((v <= 15).all() for v in nib)
        raw[b:e] = sum(v.astype("<u4") << (4 * k) for k, v in enumerate(nib)).astype("<u4").tobytes()
open(path, "wb").write(raw)
c = json.load(open(os.path.join(d, "config.json"))); c["quantization_config"]["checkpoint_format"] = "gptq_v2"
json.dump(c, open(os.path.join(d, "config.json"), "w"))
os.remove(os.path.join(d, "quantize_config.json"))
PY
ref=$(ppl "$W/b-4-128"); f=$(ppl "$W/v2"); r2=$(ppl "$W/v2" --dequantize)
check "gptq_v2 zero points: fused $f == v1 checkpoint $ref" same "$f" "$ref"
check "gptq_v2 zero points: dequantized $r2 == v1 checkpoint $ref" same "$r2" "$ref"

# mixed settings: blocks 0-1 at 8-bit g32 from one checkpoint, the rest 2-bit g64
python3 "$here/mix_checkpoint.py" "$W/b-2-64" "$W/b-8-32" "$W/mixed" 'model\.layers\.[01]\.'
check "mixed checkpoint written" test -f "$W/mixed/model.safetensors"
ref=$(ppl "$W/mixed" --dequantize); f=$(ppl "$W/mixed"); two=$(ppl "$W/b-2-64")
check "mixed: fused $f == dequantized $ref" same "$f" "$ref"
check "mixed: 8-bit blocks lower ppl than all 2-bit ($f < $two)" python3 -c "assert $f < $two"

# bad settings: one line naming the file
cp -r "$W/mixed" "$W/bad1"
python3 - "$W/bad1/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); q = c["quantization_config"]
q["dynamic"] = {"+:model\\.layers\\.[01": {"bits": 8}}
json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "bad dynamic regex" "bad1/config.json: \"dynamic\" pattern .* is not a valid regular expression" \
  "$BIN" perplexity --model "$W/bad1" --data "$WIKI" --max-windows 1
cp -r "$W/b-2-64" "$W/bad2"
python3 - "$W/bad2/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"]["bits"] = 4
json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "bits in config do not match the tensors" "model.safetensors: 'model.layers.0.self_attn.q_proj.qweight' has [0-9]+ rows but 4-bit" \
  "$BIN" perplexity --model "$W/bad2" --data "$WIKI" --max-windows 1
cp -r "$W/b-2-64" "$W/bad3"
python3 - "$W/bad3/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"]["dynamic"] = {"-:model\\.layers\\.1\\.mlp\\.up_proj": {}}
json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "qweight for a module the config keeps in float" "'model.layers.1.mlp.up_proj' has a qweight but quantization_config.dynamic keeps it in float" \
  "$BIN" perplexity --model "$W/bad3" --data "$WIKI" --max-windows 1
finish
