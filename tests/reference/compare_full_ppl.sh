#!/usr/bin/env bash
# Full WikiText-2 perplexity (ctx 512, every window) of both shared models through
# build/gptq, against the transformers values frozen in tests/fixtures/*.model.json, read
# as text (CRLF -> LF, the default) and as raw bytes.  Too slow for CI (minutes); run by
# hand:  bash tests/reference/compare_full_ppl.sh [SHARED_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${1:-../shared}
for m in stories260K llama-bpe-26m; do
  for v in text raw; do
    flag=""; key=wikitext2_lf
    [ $v = raw ] && flag=--raw-bytes && key=wikitext2
    ours=$(build/gptq perplexity --model "$SHARED/models/$m" --data "$SHARED/data/wikitext-2-raw/wiki.test.raw" --ctx 512 $flag --json | tail -1)
    python3 - "$m" "$v" "$key" "$ours" <<'PY'
import json, sys
m, v, key, ours = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ref = json.load(open(f"tests/fixtures/{m}.model.json"))[key]
d = 100 * (ours["ppl"] / ref["ppl"] - 1)
print(f"{m:14s} {v:4s}: gptq {ours['ppl']:.4f}  transformers {ref['ppl']:.4f}  diff {d:+.4f}%  "
      f"({ours['windows']} windows, {ours['seconds']:.1f} s)  {'OK' if abs(d) < 0.1 else 'MISMATCH'}")
PY
  done
done
