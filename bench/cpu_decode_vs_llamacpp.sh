#!/usr/bin/env bash
# Decode speed on the TinyLlama-1.1B shape (random weights), 2 threads, in one run:
# the memory-bandwidth probe, llama.cpp's llama-bench on Q4_0 and F16 GGUFs of the same
# weights, and our bench on the 4-bit g128 GPTQ checkpoint (q8 decode, with the probe
# repeated around each rep since the shared machine's bandwidth drifts; exact fp32
# decode) and on the fp16 model; then prefill of 512 tokens.  (issue 4, acceptance 3, 5)
# usage: bench/cpu_decode_vs_llamacpp.sh LLAMA_CPP_BIN_DIR [WORK_DIR]
# Needs: python3 with the `gguf` package (installed here with pip if missing).
set -euo pipefail
LCPP=${1:?llama.cpp bin dir (with llama-bench, llama-quantize)}; W=${2:-out/decode-bench}
BIN=${GPTQ_BIN:-build/gptq}; T=${THREADS:-2}
mkdir -p "$W"
python3 -c "import gguf" 2>/dev/null || python3 -m pip install -q gguf
[ -f "$W/tl16/config.json" ] || "$BIN" random-model --shape tinyllama-1.1b --dtype f16 --out "$W/tl16" --seed 1
[ -f "$W/tl-w4/config.json" ] || "$BIN" quantize --model "$W/tl16" --out "$W/tl-w4" --method rtn --bits 4 --group 128
[ -f "$W/tl-f16.gguf" ] || python3 "$(dirname "$0")/gguf_f16_for_llamacpp.py" "$W/tl16" "$W/tl-f16.gguf"
[ -f "$W/tl-q4_0.gguf" ] || "$LCPP/llama-quantize" "$W/tl-f16.gguf" "$W/tl-q4_0.gguf" q4_0 "$T" >/dev/null 2>&1
echo "== memory bandwidth"; "$BIN" bench --membw --threads "$T" | head -1
echo "== llama.cpp"; "$LCPP/llama-bench" -m "$W/tl-q4_0.gguf,$W/tl-f16.gguf" -t "$T" -p 512 -n 128 -r 3 2>&1 | grep -E "pp512|tg128"
echo "== gptq 4-bit g128, q8 decode (bandwidth probed before and after each rep)"
"$BIN" bench --model "$W/tl-w4" --prompt-len 1 --gen 128 --reps 3 --membw --threads "$T" --json | grep -E "^(rep|  |\{)"
echo "== gptq 4-bit g128, exact decode"; GPTQ_DECODE=exact "$BIN" bench --model "$W/tl-w4" --prompt-len 1 --gen 128 --reps 3 --threads "$T" --json | tail -1
echo "== gptq fp16"; "$BIN" bench --model "$W/tl16" --prompt-len 1 --gen 128 --reps 3 --threads "$T" --json | tail -1
echo "== prefill 512"; for m in tl-w4 tl16; do "$BIN" bench --model "$W/$m" --prompt-len 512 --gen 0 --reps 2 --threads "$T" --json | tail -1; done
