#!/usr/bin/env bash
# Kills `gptq quantize` (GPTQ) with SIGKILL at a random moment in the middle of a run,
# resumes it with --resume, and checks the checkpoint is byte-identical to an uninterrupted
# run's.  The acceptance check of issue 7 on the main quality model:
#
#   bash scripts/resume_check.sh ../shared/models/llama-bpe-26m [quantize options...]
#
# Default options: --calib ../shared/data/calib/calib_mix.txt (model-written calibration
# works too, it just takes longer).  Needs build/gptq.  Scratch space: $TMPDIR or /tmp.
set -uo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: resume_check.sh MODEL_DIR [quantize options]}; shift
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--calib ../shared/data/calib/calib_mix.txt)
G=$PWD/build/gptq
W=$(mktemp -d "${TMPDIR:-/tmp}/gptq-resume.XXXXXX")
trap 'rm -rf "$W"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

t0=$EPOCHREALTIME
"$G" quantize --model "$MODEL" --out "$W/ref" "${ARGS[@]}" 2>"$W/ref.log" >/dev/null || { cat "$W/ref.log"; exit 1; }
t_ref=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
n_layers=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$MODEL/config.json")

# Kill at a random instant after the first block is saved and before the last one is:
# anywhere, including in the middle of writing the state.
"$G" quantize --model "$MODEL" --out "$W/q" "${ARGS[@]}" 2>"$W/kill.log" >/dev/null &
pid=$!
target=$((1 + RANDOM % (n_layers - 1)))
delay=0.$((RANDOM % 10))
while kill -0 $pid 2>/dev/null; do
  done_=$(sed -n 's/.*"done":[^0-9]*\([0-9]*\).*/\1/p' "$W/q.partial/state.json" 2>/dev/null | head -1)
  if [ "${done_:-0}" -ge "$target" ]; then sleep "$delay"; kill -KILL $pid; break; fi
  sleep 0.05
done
{ wait $pid; } 2>/dev/null; rc=$?
[ $rc -eq 137 ] || { echo "the run ended (exit $rc) before it could be killed; try again"; exit 1; }
[ -e "$W/q" ] && { echo "FAIL: a killed run left $W/q"; exit 1; }
saved=$(sed -n 's/.*"done":[^0-9]*\([0-9]*\).*/\1/p' "$W/q.partial/state.json" | head -1)
leftover=$(ls "$W/q.partial" | grep -c '\.tmp\.' || true)
echo "killed (SIGKILL) $delay s after block $target of $n_layers was saved; state: $saved blocks, $leftover interrupted write(s)"

t0=$EPOCHREALTIME
"$G" quantize --model "$MODEL" --out "$W/q" --resume "${ARGS[@]}" 2>"$W/resume.log" >/dev/null || { cat "$W/resume.log"; exit 1; }
t_res=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
grep -h "resuming" "$W/resume.log"
if diff -r "$W/ref" "$W/q" >/dev/null && [ ! -e "$W/q.partial" ]; then
  echo "PASS: resumed checkpoint is byte-identical to the uninterrupted run ($(du -sb "$W/q" | cut -f1) bytes; uninterrupted $t_ref s, resumed part $t_res s)"
  (cd "$W/q" && sha256sum model.safetensors)
else
  echo "FAIL: resumed checkpoint differs from the uninterrupted run"; diff -r "$W/ref" "$W/q" | head; exit 1
fi
