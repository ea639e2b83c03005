#!/usr/bin/env bash
# Perplexity through the fused packed-weight kernels vs the reference path that
# dequantizes GPTQ layers to fp32 at load (--dequantize), for 2/3/4/8 bits, act-order on
# and off, sym and asym, on llama-bpe-26m (issue 4, acceptance 1).
# usage: bench/fused_vs_dequant.sh [SHARED_DIR] [OUT_DIR] [MAX_WINDOWS (0 = whole file)]
set -euo pipefail
SHARED=${1:-../shared}; OUT=${2:-out/fused}; MAXW=${3:-0}
BIN=${GPTQ_BIN:-build/gptq}
M=$SHARED/models/llama-bpe-26m; CAL=$SHARED/data/calib/calib_mix.txt; WIKI=$SHARED/data/wikitext-2-raw/wiki.test.raw
mkdir -p "$OUT"
ppl() { "$BIN" perplexity --model "$@" --data "$WIKI" --ctx 512 --max-windows "$MAXW" --json 2>/dev/null | tail -1 |
        python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['ppl'])"; }
echo "| bits | group | act-order | sym | fused ppl | dequantized ppl | rel. diff |"
echo "|---|---|---|---|---|---|---|"
for bits in 2 3 4 8; do
  for act in --act-order --no-act-order; do
    for sym in --sym --asym; do
      g=128; [ "$bits" = 2 ] && g=64
      d=$OUT/w$bits$act$sym
      [ -f "$d/model.safetensors" ] || "$BIN" quantize --model "$M" --out "$d" --force --bits $bits --group $g $act $sym \
          --calib "$CAL" --nsamples 32 --seqlen 512 >/dev/null 2>&1
      f=$(ppl "$d"); r=$(ppl "$d" --dequantize)
      echo "| $bits | $g | ${act#--} | ${sym#--} | $f | $r | $(python3 -c "print('%.5f%%' % (100 * abs($f - $r) / $r))") |"
    done
  done
done
