#!/usr/bin/env bash
# Perplexity of GPTQ and RTN against the reference GPTQ figures (issue: GPTQ end to end):
# llama-bpe-26m, calib_mix.txt, 128 windows x 512, WikiText-2 and PTB at ctx 512, GPTQ
# over calibration seeds 0, 1, 2, plus model-written calibration (--calib auto) at w3.
#   bench/quality_matrix.sh [SHARED_DIR] [OUT_DIR]
# JOBS (parallel jobs, default 1) and THREADS (per job, default all cores) tune it;
# GPTQ_BIN picks the binary. Prints one JSON line per run and a markdown table at the end.
set -uo pipefail
SHARED=${1:-../shared}
OUT=${2:-out/quality}
BIN=${GPTQ_BIN:-build/gptq}
JOBS=${JOBS:-1}
THREADS=${THREADS:-$(nproc)}
MODEL=$SHARED/models/llama-bpe-26m
CAL=$SHARED/data/calib/calib_mix.txt
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
PTB=$SHARED/data/ptb/ptb.test.txt
mkdir -p "$OUT"
export SHARED OUT BIN THREADS MODEL CAL WIKI PTB

run_one() {  # name method bits group flags seed calib
  local name=$1 method=$2 bits=$3 group=$4 flags=$5 seed=$6 calib=$7
  local d="$OUT/$name-s$seed" t0 t1 q w p
  if [ "$method" = fp ]; then
    d=$MODEL; q='{"seconds": 0, "bpw": 16}'
  else
    t0=$(date +%s.%N)
    q=$("$BIN" quantize --model "$MODEL" --out "$d" --force --method "$method" --bits "$bits" --group "$group" $flags \
        --calib "$calib" --nsamples 128 --seqlen 512 --seed "$seed" --threads "$THREADS" --json 2>"$d.log" | tail -1) || {
      echo "{\"name\": \"$name\", \"seed\": $seed, \"error\": \"quantize failed\"}"; return; }
  fi
  w=$("$BIN" perplexity --model "$d" --data "$WIKI" --ctx 512 --threads "$THREADS" --json 2>/dev/null | tail -1)
  p=$("$BIN" perplexity --model "$d" --data "$PTB" --ctx 512 --threads "$THREADS" --json 2>/dev/null | tail -1)
  python3 -c "
import json, sys
q, w, p = (json.loads(x) for x in sys.argv[3:6])
print(json.dumps({'name': sys.argv[1], 'seed': int(sys.argv[2]), 'wiki': w['ppl'], 'ptb': p['ppl'],
                  'bpw': q['bpw'], 'quant_s': q['seconds']}))" "$name" "$seed" "$q" "$w" "$p"
  [ "$method" != fp ] && rm -rf "$d"
}
export -f run_one

{
  echo "fp32 fp 16 0 - 0 -"
  echo "rtn-w4-g128-sym rtn 4 128 --sym 0 -"
  echo "rtn-w3-g128-sym rtn 3 128 --sym 0 -"
  echo "rtn-w2-g64-asym rtn 2 64 --asym 0 -"
  for s in 0 1 2; do
    echo "gptq-w4-g128-asym-act gptq 4 128 --asym,--act-order $s $CAL"
    echo "gptq-w3-g128-sym-act gptq 3 128 --sym,--act-order $s $CAL"
    echo "gptq-w2-g64-asym-act gptq 2 64 --asym,--act-order $s $CAL"
    echo "gptq-w3-g128-sym-act-auto gptq 3 128 --sym,--act-order $s auto"
  done
} | xargs -P "$JOBS" -L 1 bash -c 'run_one "$1" "$2" "$3" "$4" "${5//,/ }" "$6" "$7"' _ | tee "$OUT/results.jsonl"

python3 - "$OUT/results.jsonl" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ref = {"fp32": 115.50, "rtn-w4-g128-sym": 117.80, "gptq-w4-g128-asym-act": 117.47, "rtn-w3-g128-sym": 135.19,
       "gptq-w3-g128-sym-act": 127.40, "rtn-w2-g64-asym": 262.9, "gptq-w2-g64-asym-act": 206.1}
names = []
for r in rows:
    if r["name"] not in names: names.append(r["name"])
print("\n| config | bpw | seeds | WikiText-2 ppl (mean ± sd) | reference | diff | PTB ppl (mean ± sd) | quantize s |")
print("|---|---|---|---|---|---|---|---|")
for n in names:
    rs = [r for r in rows if r["name"] == n and "wiki" in r]
    if not rs: print(f"| {n} | failed |"); continue
    w = [r["wiki"] for r in rs]; p = [r["ptb"] for r in rs]
    sd = lambda v: st.stdev(v) if len(v) > 1 else 0.0
    rf = ref.get(n); diff = f"{100 * (st.mean(w) / rf - 1):+.2f}%" if rf else ""
    print(f"| {n} | {rs[0]['bpw']:.3f} | {len(rs)} | {st.mean(w):.2f} ± {sd(w):.2f} | {rf or ''} | {diff} | "
          f"{st.mean(p):.2f} ± {sd(p):.2f} | {st.mean(r['quant_s'] for r in rs):.1f} |")
PY
