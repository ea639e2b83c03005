#!/usr/bin/env bash
# quantize --target-bpw (mixed precision) on stories260K: a measurement file that is
# written, reused and refused when its key differs; a checkpoint whose per-module
# settings ("dynamic") and tensor shapes the independent numpy unpacker accepts, with
# bpw within the target; the llama.cpp-style plan; --alloc-refine; --calib-mix; bad input.
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/mixed
rm -rf "$W" && mkdir -p "$W"
S=$SHARED/models/stories260K
CAL=$SHARED/data/calib/calib_mix.txt
here=$(dirname "$0")
Q=(quantize --model "$S" --calib "$CAL" --nsamples 8 --seqlen 64)

j=$("$BIN" "${Q[@]}" --out "$W/m7" --target-bpw 7 --measurement "$W/meas.json" --report "$W/rep" \
    --dump-dequantized "$W/m7.dump.safetensors" --json 2>"$W/m7.err" | tail -1)
check "mixed quantize" test -f "$W/m7/model.safetensors"
check "achieved bpw <= target, close to it" python3 -c "
import json; d = json.loads('$j'); assert 6.8 < d['bpw'] <= 7.0 and d['measured_now'] == 30 and d['optimal'], d"
check "measurement saved" python3 -c "
import json; m = json.load(open('$W/meas.json')); assert m['format'] == 'gptq-measurement-3' and len(m['layers']) == 30, len(m['layers'])
assert all(len(l['settings']) >= 2 and not any(s['sym'] for s in l['settings']) for l in m['layers'])"
check "checkpoint has per-module dynamic overrides of several widths" python3 -c "
import json; q = json.load(open('$W/m7/config.json'))['quantization_config']
plus = [k for k in q['dynamic'] if k.startswith('+:^model\\\\.layers\\\\.')]
bits = {v['bits'] for k, v in q['dynamic'].items() if k.startswith('+:')} | {q['bits']}
assert len(plus) >= 3 and len(bits) >= 2, q
assert all(k.endswith('$') for k in q['dynamic']), q"
check "numpy unpacks every module at its own width" python3 "$here/gptq_format.py" "$W/m7" "$W/m7.dump.safetensors"
check "report: settings table, bits and predicted-vs-measured plots" test -s "$W/rep/settings.md" -a -s "$W/rep/bits.svg" \
      -a -s "$W/rep/predicted_vs_measured.svg"
check "report lists predicted errors" python3 -c "
import json; r = json.load(open('$W/rep/layers.json'))
q = [l for l in r['layers'] if l['quantized']]; assert len(q) == 30 and all('predicted_rel_output_error' in l for l in q)"

# the mixed checkpoint loads (per-module settings from "dynamic") and gives the perplexity
# the quantizer measured in memory: exactly through the dequantizing path, within 0.05%
# through the fused kernels
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
mem=$("$BIN" "${Q[@]}" --target-bpw 7 --measurement "$W/meas.json" --eval "$WIKI" --eval-ctx 128 --eval-windows 8 --json 2>/dev/null | tail -1)
fused=$("$BIN" perplexity --model "$W/m7" --data "$WIKI" --ctx 128 --max-windows 8 --json 2>/dev/null | tail -1)
deq=$("$BIN" perplexity --model "$W/m7" --data "$WIKI" --ctx 128 --max-windows 8 --dequantize --json 2>/dev/null | tail -1)
check "mixed checkpoint perplexity equals the in-memory figure ($mem / $fused / $deq)" python3 -c "
import json; a, b, c = (json.loads(x)['ppl'] for x in ('$mem', '$fused', '$deq'))
assert abs(c - a) <= 1e-6 * a and abs(b - a) <= 5e-4 * a, (a, b, c)"

# --eval-kl: KL from the float model in memory, one value per text; zero for 8-bit-only noise
j=$("$BIN" "${Q[@]}" --target-bpw 7 --measurement "$W/meas.json" --eval-kl "$CAL,$WIKI" --eval-ctx 64 --eval-kl-windows 4 --json 2>/dev/null | tail -1)
check "--eval-kl gives a KL per text" python3 -c "
import json; d = json.loads('$j'); k = d['kl']; assert len(k) == 2 and all(0 < x < 1 for x in k), d"

# a second target reuses the measurement: nothing measured again
j=$("$BIN" "${Q[@]}" --out "$W/m8" --target-bpw 8 --measurement "$W/meas.json" --json 2>"$W/m8.err" | tail -1)
check "second target reuses the measurement" python3 -c "
import json; d = json.loads('$j'); assert d['measured_now'] == 0 and d['bpw'] <= 8.0, d"
check "stderr says so" grep -q "0 Linears measured now, 30 reused" "$W/m8.err"

# resume: drop layers from the file, only those are measured again
python3 -c "
import json; m = json.load(open('$W/meas.json')); m['layers'] = m['layers'][:11]; json.dump(m, open('$W/part.json', 'w'))"
j=$("$BIN" "${Q[@]}" --out "$W/m7b" --target-bpw 7 --measurement "$W/part.json" --json 2>/dev/null | tail -1)
check "resume measures only the missing layers" python3 -c "
import json; d = json.loads('$j'); assert d['measured_now'] == 19, d
a = json.load(open('$W/meas.json'))['layers']; b = json.load(open('$W/part.json'))['layers']
assert [x['settings'] for x in a] == [x['settings'] for x in b]"

# a format-2 file (before the 2-/4-bit KL points) is read and its Linears measured again, with a warning
sed 's/gptq-measurement-3/gptq-measurement-2/' "$W/meas.json" > "$W/v2.json"
j=$("$BIN" "${Q[@]}" --target-bpw 7 --measurement "$W/v2.json" --eval-kl "$CAL" --eval-ctx 64 --eval-kl-windows 2 --json 2>"$W/v2.err" | tail -1)
check "format-2 measurement: measured again" python3 -c "
import json; d = json.loads('$j'); assert d['measured_now'] == 30, d
assert json.load(open('$W/v2.json'))['format'] == 'gptq-measurement-3'"
check "format-2 measurement: warned" grep -q "v2.json: 30 Linears measured by an older version" "$W/v2.err"

# llama.cpp-style allocation
j=$("$BIN" "${Q[@]}" --out "$W/h7" --target-bpw 7 --alloc-heuristic llama.cpp --dump-dequantized "$W/h7.dump.safetensors" --json 2>"$W/h7.err" | tail -1)
check "llama.cpp-style plan within the target" python3 -c "import json; d = json.loads('$j'); assert d['bpw'] <= 7.0, d"
check "llama.cpp-style: v_proj above q_proj" python3 -c "
import json; q = json.load(open('$W/h7/config.json'))['quantization_config']
v = q['dynamic']['+:^model\\\\.layers\\\\.0\\\\.self_attn\\\\.v_proj\$']['bits']; assert v > q['bits'], q"
check "numpy unpacks the llama.cpp-style checkpoint" python3 "$here/gptq_format.py" "$W/h7" "$W/h7.dump.safetensors"

# --calib-mix: half the windows model-written
check "--calib-mix 0.5" "$BIN" "${Q[@]}" --out "$W/cm" --target-bpw 7 --calib-mix 0.5 --json

# bad input
expect_error "target below the smallest settings" "--target-bpw 3 is below the .* bpw of the smallest menu settings" \
  "$BIN" "${Q[@]}" --out "$W/x1" --target-bpw 3 --measurement "$W/meas.json"
expect_error "measurement from other calibration windows" "meas.json: measured with other calibration windows" \
  "$BIN" "${Q[@]}" --seed 5 --out "$W/x2" --target-bpw 7 --measurement "$W/meas.json"
echo '{"format": "gptq-measurement-3"}' > "$W/bad.json"
check "mixed precision measures with MSE grids by default" python3 -c "
import json; assert json.load(open('$W/meas.json'))['key']['mse'] is True"
expect_error "--no-mse with a measurement made with MSE grids" "meas.json: measured with MSE grids on; use another file" \
  "$BIN" "${Q[@]}" --out "$W/x9" --target-bpw 7 --measurement "$W/meas.json" --no-mse
expect_error "--mse with --no-mse" "--mse and --no-mse exclude each other" "$BIN" "${Q[@]}" --out "$W/x10" --target-bpw 7 --mse --no-mse
expect_error "malformed measurement file" "bad.json: not a measurement file" \
  "$BIN" "${Q[@]}" --out "$W/x3" --target-bpw 7 --measurement "$W/bad.json"
expect_error "--calib-mix without a file" "--calib-mix needs --calib FILE" \
  "$BIN" quantize --model "$S" --out "$W/x4" --target-bpw 7 --calib-mix 0.5
expect_error "rtn with a target" "--target-bpw needs --method gptq" "$BIN" "${Q[@]}" --method rtn --out "$W/x5" --target-bpw 7
expect_error "unknown objective" "--alloc-objective must be kl, kl-pow, nll, sq or abs" "$BIN" "${Q[@]}" --out "$W/x8" --target-bpw 7 --alloc-objective foo
check "--alloc-objective kl-pow" "$BIN" "${Q[@]}" --out "$W/kq" --target-bpw 7 --measurement "$W/meas.json" --alloc-objective kl-pow --json
check "--alloc-objective nll" "$BIN" "${Q[@]}" --out "$W/kn" --target-bpw 7 --measurement "$W/meas.json" --alloc-objective nll --json
check "the measurement records dnll" grep -q '"dnll"' "$W/meas.json"
# a measurement file from before dnll was recorded: kl still plans from it, nll refuses it
python3 - "$W/meas.json" "$W/old3.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d.pop("sensitivity_float_nll", None)
for L in d["layers"]:
    for p in L["sensitivity_points"]:
        p.pop("dnll", None)
json.dump(d, open(sys.argv[2], "w"))
PY
check "kl plans from a file without dnll" "$BIN" "${Q[@]}" --out "$W/k3" --target-bpw 7 --measurement "$W/old3.json" --json
expect_error "nll refuses a file without dnll" "old3.json: .* was measured without the NLL sensitivities .*: --alloc-objective nll needs a new --measurement file" \
  "$BIN" "${Q[@]}" --out "$W/x9" --target-bpw 7 --measurement "$W/old3.json" --alloc-objective nll
# --alloc-refine: the allocation again with sensitivities measured in the plan's quantized
# model; the checkpoint stays within the target and says how long the refinement took
j=$("$BIN" "${Q[@]}" --out "$W/kr" --target-bpw 6.8 --measurement "$W/meas.json" --alloc-refine 2 --dump-dequantized "$W/kr.dump.safetensors" --json 2>"$W/kr.err" | tail -1)
check "--alloc-refine 2 within the target" python3 -c "
import json; d = json.loads('$j'); assert d['bpw'] <= 6.8 and d['refine_rounds'] == 2 and d['refine_seconds'] > 0 and d['measured_now'] == 0, d"
check "--alloc-refine reports each round" test "$(grep -c 'refine round [12]: plan KL' "$W/kr.err")" = 2
check "numpy unpacks the refined checkpoint" python3 "$here/gptq_format.py" "$W/kr" "$W/kr.dump.safetensors"
expect_error "--alloc-refine needs the kl objective" "--alloc-refine goes with --target-bpw and the kl objective" \
  "$BIN" "${Q[@]}" --out "$W/x13" --target-bpw 7 --measurement "$W/meas.json" --alloc-refine 1 --alloc-objective nll
expect_error "--alloc-refine needs a target" "--alloc-refine goes with --target-bpw" "$BIN" "${Q[@]}" --out "$W/x14" --alloc-refine 1
expect_error "--alloc-refine: at most 8 rounds" "alloc-refine" "$BIN" "${Q[@]}" --out "$W/x15" --target-bpw 7 --alloc-refine 9
expect_error "unknown heuristic" "--alloc-heuristic must be llama.cpp" "$BIN" "${Q[@]}" --out "$W/x6" --target-bpw 7 --alloc-heuristic foo
expect_error "heuristic below its smallest plan" "below the smallest llama.cpp-style plan \([0-9]+\.[0-9]{4} bpw\)" \
  "$BIN" "${Q[@]}" --out "$W/x7" --target-bpw 2.01 --alloc-heuristic llama.cpp
for x in x1 x2 x3 x4 x5 x6 x7 x8 x9 x10 x13 x14 x15; do check "no output left for $x" test ! -e "$W/$x"; done
finish
