#!/usr/bin/env bash
# Perplexity against bits per weight (issue: mixed precision): llama-bpe-26m, calibration
# calib_mix.txt (128 windows x 512, seed 0), WikiText-2 perplexity at ctx 512 (whole file,
# in memory: `quantize --eval` gives the same figure as loading the written checkpoint).
#   bench/mixed_curve.sh [SHARED_DIR] [OUT_DIR] [PART...]
# PART: uniform (GPTQ act-order at menu settings between 2.2 and 4.5 bpw), uniform-mse (the
# same with --mse at the issue's reference settings), rtn (RTN at some of them), mixed
# (--target-bpw with one shared measurement: MSE grids, the default), minmax (--target-bpw
# --no-mse: min-max grids, its own measurement), heuristic (--target-bpw --alloc-heuristic
# llama.cpp), table (nothing new), accept (mixed and minmax at the bpw of uniform w2 g64,
# w3 g128, w4 g128); default: all. Runs already in OUT/results.jsonl are skipped,
# so an interrupted run resumes. THREADS (default all cores), GPTQ_BIN, EVAL_WINDOWS
# (0 = whole file), SETTINGS / RTN_SETTINGS / TARGETS / HTARGETS / ACCEPT tune it. Ends with
# a markdown table and OUT/ppl_vs_bpw.svg (families: mixed, uniform, rtn, heuristic).
set -uo pipefail
SHARED=${1:-../shared}
OUT=${2:-out/mixed_curve}
shift 2 2>/dev/null || shift $#
PARTS=${*:-uniform uniform-mse rtn mixed minmax heuristic accept}
BIN=${GPTQ_BIN:-build/gptq}
THREADS=${THREADS:-$(nproc)}
EW=${EVAL_WINDOWS:-0}
MODEL=$SHARED/models/llama-bpe-26m
CAL=$SHARED/data/calib/calib_mix.txt
WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
RES=$OUT/results.jsonl
mkdir -p "$OUT"
touch "$RES"
COMMON=(--model "$MODEL" --calib "$CAL" --nsamples 128 --seqlen 512 --seed 0 --eval "$WIKI" --eval-ctx 512
        --eval-windows "$EW" --threads "$THREADS" --json)

run() {  # family label args...
  local fam=$1 label=$2; shift 2
  if grep -q "\"family\": \"$fam\", \"label\": \"$label\"" "$RES"; then return; fi
  local j
  j=$("$BIN" quantize "${COMMON[@]}" "$@" 2>"$OUT/$fam-$label.log" | tail -1)
  if [ -z "$j" ] || [ "${j:0:1}" != "{" ]; then echo "$fam $label: failed (see $OUT/$fam-$label.log)" >&2; return; fi
  echo "{\"family\": \"$fam\", \"label\": \"$label\", \"result\": $j}" | tee -a "$RES"
}

# bits:group[:sym|asym] (asym by default); the issue's reference configurations are
# w4 g128 asym, w3 g128 sym and w2 g64 asym
SETTINGS=${SETTINGS:-"2:128 2:64 2:32 3:-1 3:128 3:128:sym 3:64 4:-1 4:128"}
RTN_SETTINGS=${RTN_SETTINGS:-"2:64 2:32 3:128:sym 3:64 4:128:sym"}
MSE_SETTINGS=${MSE_SETTINGS:-"2:64 3:128 3:128:sym 4:128"}
TARGETS=${TARGETS:-"2.25 2.5 2.75 3.0 3.5 4.0 4.5"}
HTARGETS=${HTARGETS:-"2.5 3.0 3.5 4.0 4.5"}
ACCEPT=${ACCEPT:-"2.3299 3.1970 4.2049"}  # the bpw of uniform w2 g64, w3 g128, w4 g128
label() { local b=${1%%:*} r=${1#*:}; local g=${r%%:*} m=asym; [ "$r" != "$g" ] && m=${r#*:}; echo "w${b}g${g}-$m"; }
args() { local b=${1%%:*} r=${1#*:}; local g=${r%%:*} m=asym; [ "$r" != "$g" ] && m=${r#*:}; echo "--bits $b --group $g --$m"; }
for part in $PARTS; do
  case $part in
  uniform) for s in $SETTINGS; do run uniform "$(label "$s")" $(args "$s") --act-order; done ;;
  uniform-mse) for s in $MSE_SETTINGS; do run uniform-mse "$(label "$s")" $(args "$s") --act-order --mse; done ;;
  rtn) for s in $RTN_SETTINGS; do run rtn "$(label "$s")" --method rtn $(args "$s"); done ;;
  mixed) for t in $TARGETS; do run mixed "$t" --target-bpw "$t" --measurement "$OUT/measurement.json"; done ;;
  minmax) for t in $TARGETS; do run mixed-minmax "$t" --target-bpw "$t" --no-mse --measurement "$OUT/measurement-minmax.json"; done ;;
  heuristic) for t in $HTARGETS; do run heuristic "$t" --target-bpw "$t" --alloc-heuristic llama.cpp; done ;;
  accept) for t in $ACCEPT; do
            run mixed "$t" --target-bpw "$t" --measurement "$OUT/measurement.json"
            run mixed-minmax "$t" --target-bpw "$t" --no-mse --measurement "$OUT/measurement-minmax.json"
          done ;;
  table) ;;  # only the table and plot from the results so far
  *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done

python3 - "$RES" "$OUT/ppl_vs_bpw.svg" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fams = {}
for r in rows:  # symmetric uniform GPTQ gets its own line (same bpw as asym, other ppl)
    f = r["family"] + ("-sym" if r["family"].startswith("uniform") and r["label"].endswith("-sym") else "")
    fams.setdefault(f, []).append((r["result"]["bpw"], r["result"]["ppl"], r["label"]))
print("\n| method | setting / target | bpw | WikiText-2 ppl |")
print("|---|---|---|---|")
for f, pts in fams.items():
    for b, p, l in sorted(pts):
        print(f"| {f} | {l} | {b:.4f} | {p:.2f} |")
fams = {f: [x for x in pts] for f, pts in fams.items()}
W, H, L, R, T, B = 760, 460, 70, 160, 40, 50
pw, ph = W - L - R, H - T - B
xs = [b for pts in fams.values() for b, _, _ in pts]; ys = [p for pts in fams.values() for _, p, _ in pts]
x0, x1 = min(xs + [2.25]) - 0.05, max(xs + [4.5]) + 0.05
import math
y0, y1 = math.log(min(ys)) - 0.02, math.log(max(ys)) + 0.02
X = lambda b: L + pw * (b - x0) / (x1 - x0)
Y = lambda p: T + ph - ph * (math.log(p) - y0) / (y1 - y0)
col = {"mixed": "#d62728", "mixed-minmax": "#ff9896", "uniform": "#1f77b4", "uniform-sym": "#17becf",
       "uniform-mse": "#9467bd", "uniform-mse-sym": "#c5b0d5", "rtn": "#7f7f7f", "heuristic": "#2ca02c"}
o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
     '<rect width="100%" height="100%" fill="white"/>',
     f'<text x="{L}" y="22" font-size="15">llama-bpe-26m: WikiText-2 perplexity (ctx 512) vs bits per weight</text>',
     f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>']
for i in range(7):
    p = math.exp(y0 + (y1 - y0) * i / 6); y = Y(p)
    o.append(f'<line x1="{L}" x2="{L+pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/><text x="{L-6}" y="{y+4:.1f}" text-anchor="end">{p:.0f}</text>')
b = 2.25
while b <= x1:
    x = X(b); o.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{T+ph}" stroke="#eee"/><text x="{x:.1f}" y="{T+ph+18}" text-anchor="middle">{b:g}</text>'); b += 0.25
o.append(f'<text x="{L+pw/2}" y="{H-10}" text-anchor="middle">bits per weight (scales, zeros, g_idx included)</text>')
for k, (f, pts) in enumerate(fams.items()):
    c = col.get(f, "#9467bd"); pts = sorted(pts)
    o.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (c, " ".join(f"{X(b):.1f},{Y(p):.1f}" for b, p, _ in pts)))
    for b, p, _ in pts: o.append(f'<circle cx="{X(b):.1f}" cy="{Y(p):.1f}" r="3" fill="{c}"/>')
    ly = T + 14 + 18 * k
    o.append(f'<line x1="{L+pw+12}" x2="{L+pw+32}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{L+pw+38}" y="{ly+4}">{f}</text>')
o.append("</svg>")
open(sys.argv[2], "w").write("\n".join(o) + "\n")
PY
