#!/usr/bin/env bash
# quantize --device cuda: what the GPU path does not take is one clear error (in every build,
# with or without a GPU); without a GPU (or without CUDA) --device cuda is one clear error.
# With a GPU (the device tool): stories260K quantized on the GPU and on the CPU from the same
# calibration windows, both checkpoints within 2% perplexity of each other.
source "$(dirname "$0")/common.bash"
need_shared
M=$SHARED/models/stories260K
D=$SHARED/data/wikitext-2-raw/wiki.test.raw
O=$TMP/cuda_quantize
rm -rf "$O" && mkdir -p "$O"
Q="$BIN quantize --model $M --calib $D --nsamples 16 --seqlen 128"

expect_error "--device bad" "--device must be cpu or cuda" $Q --out "$O/x" --device tpu
expect_error "--gpu-fp16 without cuda" "--gpu-fp16 goes with --device cuda" $Q --out "$O/x" --gpu-fp16
expect_error "cuda rtn" "gptq only" $Q --out "$O/x" --device cuda --method rtn
expect_error "cuda gguf" "does not take --format gguf" $Q --out "$O/x.gguf" --format gguf --device cuda
expect_error "cuda target-bpw" "does not take --target-bpw" $Q --out "$O/x" --target-bpw 4 --device cuda
expect_error "cuda resume" "does not take --resume" $Q --out "$O/x" --resume --device cuda
expect_error "cuda block 256" "takes --block 1..128" $Q --out "$O/x" --block 256 --device cuda

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  $Q --bits 4 --group 32 --out "$O/gpu" --device cuda --json > "$O/gpu.json" 2>"$O/gpu.err"
  check "quantize --device cuda" grep -q '"device": "cuda"' "$O/gpu.json"
  $Q --bits 4 --group 32 --out "$O/cpu" > /dev/null 2>&1
  check "quantize cpu" test -f "$O/cpu/config.json"
  cpu=$("$BIN" perplexity --model "$O/cpu" --data "$D" --max-windows 16 --json | tail -1 | sed 's/.*"ppl": \([0-9.]*\).*/\1/')
  gpu=$("$BIN" perplexity --model "$O/gpu" --data "$D" --max-windows 16 --json | tail -1 | sed 's/.*"ppl": \([0-9.]*\).*/\1/')
  echo "stories260K w4 g32 act-order, 16 windows: ppl of the CPU-quantized $cpu, GPU-quantized $gpu"
  check "GPU-quantized ppl ~ CPU-quantized" python3 -c "import sys; a, b = float('$cpu'), float('$gpu'); sys.exit(0 if abs(a - b) <= 0.02 * a else 1)"
else
  expect_error "quantize --device cuda without a GPU" "(CUDA|GPU)" $Q --out "$O/x" --device cuda
fi
rm -rf "$O"
finish
