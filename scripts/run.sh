#!/usr/bin/env bash
# The main job: set up, build, quantize a model with GPTQ (default settings) and report
# WikiText-2 perplexity before and after.
#   scripts/run.sh [MODEL_DIR [quantize options...]]
# MODEL_DIR defaults to ../shared/models/llama-bpe-26m; the checkpoint goes to
# out/<model name>-gptq; EVAL=<file> picks another evaluation text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODEL=${1:-../shared/models/llama-bpe-26m}
[ $# -gt 0 ] && shift
EVAL=${EVAL:-../shared/data/wikitext-2-raw/wiki.test.raw}
OUT=out/$(basename "$MODEL")-gptq
mkdir -p out
G=build/gptq

echo "== $MODEL: perplexity before quantization ($EVAL, ctx 512)"
before=$($G perplexity --model "$MODEL" --data "$EVAL" --ctx 512 --json | tail -1)
echo "$before"
echo "== quantizing (gptq quantize --model $MODEL --out $OUT $*)"
quant=$($G quantize --model "$MODEL" --out "$OUT" --force --report "$OUT-report" --json "$@" | tail -1)
echo "$quant"
echo "== perplexity after quantization"
after=$($G perplexity --model "$OUT" --data "$EVAL" --ctx 512 --json | tail -1)
echo "$after"
python3 - "$before" "$quant" "$after" <<'PY'
import json, sys
b, q, a = (json.loads(x) for x in sys.argv[1:4])
print(f"\nperplexity {b['ppl']:.3f} -> {a['ppl']:.3f} ({100*(a['ppl']/b['ppl']-1):+.2f}%) at {q['bpw']:.3f} bits per weight; "
      f"quantized in {q['seconds']:.1f} s, peak RSS {q['peak_rss_mb']:.0f} MiB; checkpoint in {q['out']}")
PY
