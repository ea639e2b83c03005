#!/usr/bin/env bash
# quantize: RTN and GPTQ checkpoints that load back, that an independent numpy unpacker
# reads as exactly the weights the quantizer held, per-layer reports, and bad input.
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/quantize
rm -rf "$W" && mkdir -p "$W"
S=$SHARED/models/stories260K
B=$SHARED/models/llama-bpe-26m
CAL=$SHARED/data/calib/calib_mix.txt
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
here=$(dirname "$0")

ppl() { "$BIN" perplexity --model "$1" --data "$WIKI" --ctx 128 --max-windows 8 --json 2>/dev/null | tail -1 |
        python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])"; }

# --- stories260K: down_proj (172 wide) cannot be packed and stays in float ---
err=$("$BIN" quantize --model "$S" --out "$W/s-rtn" --method rtn --bits 4 --group 32 2>&1 >/dev/null)
check "rtn quantize stories260K" test -f "$W/s-rtn/model.safetensors"
check "one warning for the layers kept in float" test "$(grep -c 'warning: 15 layers kept in float' <<<"$err")" = 1
check "config marks the float layers" python3 -c "
import json; q = json.load(open('$W/s-rtn/config.json'))['quantization_config']
assert q['bits'] == 4 and q['group_size'] == 32 and q['sym'] and not q['desc_act'], q
assert any('down_proj' in k for k in q['dynamic']), q"
fp=$(ppl "$S"); q=$(ppl "$W/s-rtn")
check "rtn 4-bit ppl within 15% of float ($fp -> $q)" python3 -c "assert $q < 1.15 * $fp"
cmp=$("$BIN" perplexity --model "$W/s-rtn" --compare "$S" --data "$WIKI" --ctx 128 --max-windows 4 --json 2>/dev/null | tail -1)
check "--compare: KL > 0 and top-1 agreement below 100% for a 4-bit model" python3 -c "
import json; d = json.loads('$cmp'); assert 0 < d['kl'] < 1 and 0.5 < d['top1'] < 1 and d['ref_ppl'] < d['ppl'], d"
cmp=$("$BIN" perplexity --model "$S" --compare "$S" --data "$WIKI" --ctx 128 --max-windows 2 --json 2>/dev/null | tail -1)
check "--compare against itself: KL 0, agreement 100%" python3 -c "
import json; d = json.loads('$cmp'); assert abs(d['kl']) < 1e-6 and d['top1'] == 1 and d['ref_ppl'] == d['ppl'], d"
check "quantized model generates" "$BIN" generate --model "$W/s-rtn" --prompt Zoo -n 10 --temp 0 >/dev/null 2>&1

# in memory, the 172-wide down_proj is quantized too, with a shorter last group (172 = 2*64 + 44)
out=$("$BIN" quantize --model "$S" --calib "$CAL" --nsamples 16 --seqlen 128 --group 64 --eval "$WIKI" --eval-ctx 128 --eval-windows 8 --report "$W/s-rep" --json 2>/dev/null)
check "in-memory GPTQ with a short last group" grep -q "perplexity (quantized, in memory)" <<<"$out"
check "report lists down_proj quantized" python3 -c "
import json; r = json.load(open('$W/s-rep/layers.json'))
d = [l for l in r['layers'] if l['sublayer'] == 'mlp.down_proj']
assert len(d) == 5 and all(l['quantized'] and l['in'] == 172 for l in d), d"
check "report csv and svg" test -s "$W/s-rep/layers.csv" -a -s "$W/s-rep/error.svg"

# --- llama-bpe-26m: GPTQ at 3 and 4 bits, act-order and asym, checked by the numpy unpacker ---
for cfg in "3 128 --act-order --sym" "4 64 --act-order --asym" "2 64 --no-act-order --asym" "8 -1 --static-groups --sym"; do
  set -- $cfg
  d=$W/b-$1-$2
  "$BIN" quantize --model "$B" --out "$d" --bits "$1" --group "$2" $3 $4 --calib "$CAL" --nsamples 4 --seqlen 128 \
      --dump-dequantized "$d.dump.safetensors" >/dev/null 2>"$d.err"
  check "quantize $cfg" test -f "$d/model.safetensors"
  check "numpy unpack equals in-memory weights ($cfg)" python3 "$here/gptq_format.py" "$d" "$d.dump.safetensors"
done
fp=$(ppl "$B"); q=$(ppl "$W/b-4-64")
check "gptq 4-bit ppl within 10% of float ($fp -> $q)" python3 -c "assert $q < 1.10 * $fp"

# --- bad input: one-line error, non-zero exit, no output directory ---
expect_error "unknown bits" "--bits must be 2, 3, 4 or 8" "$BIN" quantize --model "$S" --out "$W/x1" --bits 5
expect_error "group 0" "--group must be -1" "$BIN" quantize --model "$S" --out "$W/x2" --group 0
: > "$W/empty.txt"
expect_error "empty calibration file" "empty.txt: empty calibration text" "$BIN" quantize --model "$S" --out "$W/x3" --calib "$W/empty.txt"
mkdir -p "$W/gpt2"; cp "$S"/* "$W/gpt2/" 2>/dev/null
python3 -c "
import json; p='$W/gpt2/config.json'; c=json.load(open(p)); c['model_type']='gpt2'; json.dump(c, open(p,'w'))"
expect_error "non-Llama model" "model_type \"gpt2\" is not supported" "$BIN" quantize --model "$W/gpt2" --out "$W/x4" --method rtn
mkdir -p "$W/nan"; cp "$S"/* "$W/nan/" 2>/dev/null
python3 - "$W/nan/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); off = 8 + n + h['model.layers.2.mlp.up_proj.weight']['data_offsets'][0]
b[off + 40:off + 44] = struct.pack('<f', float('nan'))
open(p, 'wb').write(b)
PY
expect_error "NaN weight (gptq)" "tensor 'model\.layers\.2\.mlp\.up_proj\.weight' element \[.*\] is not finite" "$BIN" quantize --model "$W/nan" --out "$W/x5" --calib "$CAL" --nsamples 2 --seqlen 64
expect_error "NaN weight (rtn)" "tensor 'model\.layers\.2\.mlp\.up_proj\.weight' element \[.*\] is not finite" "$BIN" quantize --model "$W/nan" --out "$W/x6" --method rtn
for x in x1 x2 x3 x4 x5 x6; do check "no output left for $x" test ! -e "$W/$x"; done
check "no temporary directories left" test -z "$(ls -d "$W"/x*.tmp.* 2>/dev/null)"
finish
