#!/usr/bin/env bash
# --device on bench, perplexity and generate: bad values are one clear error; on a machine without
# a GPU (or a build without CUDA) --device cuda is one clear error, never a crash.  With a
# GPU (the device tool), --device cuda must run: bench's JSON line, a perplexity equal
# to the CPU's within 1% and the same greedy text as the CPU on stories260K.
source "$(dirname "$0")/common.bash"
need_shared
M=$SHARED/models/stories260K
D=$SHARED/data/wikitext-2-raw/wiki.test.raw

expect_error "bench --device bad" "--device must be cpu or cuda" "$BIN" bench --model "$M" --device tpu
expect_error "perplexity --device bad" "--device must be cpu or cuda" "$BIN" perplexity --model "$M" --data "$D" --device tpu
expect_error "generate --device bad" "--device must be cpu or cuda" "$BIN" generate --model "$M" --prompt Zoo --device tpu
expect_error "perplexity cuda --compare" "does not take --compare" "$BIN" perplexity --model "$M" --data "$D" --device cuda --compare "$M"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU && "$BIN" bench --model "$M" --device cuda --prompt-len 8 --gen 4 >/dev/null 2>&1; then
  out=$("$BIN" bench --model "$M" --device cuda --prompt-len 64 --gen 16 --json | tail -1)
  check "bench --device cuda JSON" grep -q '"device": "cuda"' <<<"$out"
  check "bench --device cuda names its decode GEMV (stories260K float: fp16)" grep -q '"decode_gemv": "fp16"' <<<"$out"
  check "bench --device cuda reports the GPU's time per decode step" grep -qE '"decode_gpu_ms_per_token": (0\.0*[1-9]|[1-9])' <<<"$out"
  cpu=$("$BIN" perplexity --model "$M" --data "$D" --max-windows 8 --json | tail -1 | sed 's/.*"ppl": \([0-9.]*\).*/\1/')
  gpu=$("$BIN" perplexity --model "$M" --data "$D" --max-windows 8 --device cuda --json | tail -1 | sed 's/.*"ppl": \([0-9.]*\).*/\1/')
  echo "stories260K, 8 windows: ppl cpu $cpu, cuda $gpu"
  check "perplexity cuda ~ cpu" python3 -c "import sys; a, b = float('$cpu'), float('$gpu'); sys.exit(0 if abs(a - b) <= 0.01 * a else 1)"
  tc=$("$BIN" generate --model "$M" --prompt Zoo -n 60 --temp 0 2>/dev/null)
  tg=$("$BIN" generate --model "$M" --prompt Zoo -n 60 --temp 0 --device cuda 2>/dev/null)
  echo "generate cuda: $tg"
  check "generate cuda = cpu (greedy)" test "$tc" = "$tg"
else
  expect_error "bench --device cuda without a GPU" "(no CUDA device|built without CUDA)" "$BIN" bench --model "$M" --device cuda
  expect_error "perplexity --device cuda without a GPU" "(no CUDA device|built without CUDA)" \
    "$BIN" perplexity --model "$M" --data "$D" --device cuda --max-windows 1
  expect_error "generate --device cuda without a GPU" "(no CUDA device|built without CUDA)" \
    "$BIN" generate --model "$M" --prompt Zoo -n 4 --device cuda
fi
finish
