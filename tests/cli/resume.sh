#!/usr/bin/env bash
# Resumable quantization on stories260K: a GPTQ run killed after a block (SIGKILL, Ctrl-C,
# or between writing a block's files and committing them) leaves OUT.partial and no OUT;
# `--resume` continues it to a checkpoint byte-identical to an uninterrupted run's, with the
# same per-layer report; mismatched settings, a missing --resume or --force are handled.
# The kill points come from GPTQ_TEST_KILL_AFTER_BLOCK (quant/resume.h); one run is also
# killed from outside at a random moment.  scripts/resume_check.sh does that on larger models.
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/resume
rm -rf "$W" && mkdir -p "$W"
M=$SHARED/models/stories260K
A=(--calib "$SHARED/data/calib/calib_mix.txt" --nsamples 8 --seqlen 128)

# the report without its timings
report() { python3 -c "
import json, sys
rows = json.load(open(sys.argv[1]))['layers']
for r in rows: r.pop('seconds', None)
print(json.dumps(rows, sort_keys=True))" "$1/layers.json"; }

check "uninterrupted run" "$BIN" quantize --model "$M" --out "$W/ref" "${A[@]}" --report "$W/ref-report"

done_blocks() { sed -n 's/.*"done":[^0-9]*\([0-9]*\).*/\1/p' "$1/state.json" 2>/dev/null | head -1; }

# same_as_ref NAME: OUT is identical to the reference and OUT.partial is gone
same_as_ref() {
  if diff -r "$W/ref" "$W/$1" >/dev/null && [ ! -e "$W/$1.partial" ]; then ok; else bad "$1: resumed checkpoint differs from the uninterrupted run"; fi
}

# 1. SIGKILL after block 2 of 5
GPTQ_TEST_KILL_AFTER_BLOCK=2 "$BIN" quantize --model "$M" --out "$W/k" "${A[@]}" >/dev/null 2>&1
rc=$?
check "SIGKILL: exit 137" test $rc -eq 137
check "SIGKILL: no output directory" test ! -e "$W/k"
check "SIGKILL: 2 blocks saved" test "$(done_blocks "$W/k.partial")" = 2
expect_error "an interrupted run needs --resume or --force" "k\.partial holds an interrupted run: pass --resume" \
  "$BIN" quantize --model "$M" --out "$W/k" "${A[@]}"
expect_error "other settings are refused" "k\.partial/state\.json: the interrupted run used other settings" \
  "$BIN" quantize --model "$M" --out "$W/k" "${A[@]}" --bits 3 --resume
check "SIGKILL: --resume completes" "$BIN" quantize --model "$M" --out "$W/k" "${A[@]}" --resume --report "$W/k-report"
same_as_ref k
check "report rows present" test -n "$(report "$W/ref-report")"
check "SIGKILL: same report rows" test "$(report "$W/ref-report")" = "$(report "$W/k-report")"

# 2. Ctrl-C (SIGINT) after block 1: a message saying how to continue, then the same
err=$(GPTQ_TEST_KILL_AFTER_BLOCK=1:INT "$BIN" quantize --model "$M" --out "$W/i" "${A[@]}" 2>&1 >/dev/null)
rc=$?
check "SIGINT: killed by the signal" test $rc -eq 130
if printf '%s' "$err" | grep -q "interrupted; 1 of 5 blocks are saved in .*i\.partial: run the same command with --resume"; then ok; else bad "SIGINT message: $err"; fi
check "SIGINT: --resume completes" "$BIN" quantize --model "$M" --out "$W/i" "${A[@]}" --resume
same_as_ref i

# 3. killed after block 3's files are written but before state.json commits them
GPTQ_TEST_KILL_AFTER_BLOCK=3:MID "$BIN" quantize --model "$M" --out "$W/m" "${A[@]}" >/dev/null 2>&1
check "mid-save kill: the last committed state is block 2" test "$(done_blocks "$W/m.partial")" = 2
check "mid-save kill: --resume completes" "$BIN" quantize --model "$M" --out "$W/m" "${A[@]}" --resume
same_as_ref m

# 4. killed twice, resumed twice (the second run is itself a resumed one)
GPTQ_TEST_KILL_AFTER_BLOCK=1 "$BIN" quantize --model "$M" --out "$W/t" "${A[@]}" >/dev/null 2>&1
GPTQ_TEST_KILL_AFTER_BLOCK=4 "$BIN" quantize --model "$M" --out "$W/t" "${A[@]}" --resume >/dev/null 2>&1
check "twice: 4 blocks saved" test "$(done_blocks "$W/t.partial")" = 4
check "twice: --resume completes" "$BIN" quantize --model "$M" --out "$W/t" "${A[@]}" --resume
same_as_ref t

# 5. killed from outside at a random moment once a block is saved (maybe mid-write)
"$BIN" quantize --model "$M" --out "$W/x" "${A[@]}" --nsamples 32 >/dev/null 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null && [ "$(done_blocks "$W/x.partial")" = "" -o "$(done_blocks "$W/x.partial")" = 0 ]; do sleep 0.02; done
kill -KILL $pid 2>/dev/null
{ wait $pid; } 2>/dev/null
"$BIN" quantize --model "$M" --out "$W/xref" "${A[@]}" --nsamples 32 >/dev/null 2>&1
check "external SIGKILL: --resume completes" "$BIN" quantize --model "$M" --out "$W/x" "${A[@]}" --nsamples 32 --resume
if diff -r "$W/xref" "$W/x" >/dev/null && [ ! -e "$W/x.partial" ]; then ok; else bad "external SIGKILL: resumed checkpoint differs"; fi

# 6. --force discards a saved state; --resume without one starts from the beginning
GPTQ_TEST_KILL_AFTER_BLOCK=2 "$BIN" quantize --model "$M" --out "$W/f" "${A[@]}" >/dev/null 2>&1
check "--force starts over" "$BIN" quantize --model "$M" --out "$W/f" "${A[@]}" --force
same_as_ref f
check "--resume with nothing saved" "$BIN" quantize --model "$M" --out "$W/n" "${A[@]}" --resume
same_as_ref n
# a failing run with no finished block leaves no state behind
"$BIN" quantize --model "$M" --out "$W/e" --calib /nonexistent.txt >/dev/null 2>&1
check "failed before the first block: no OUT.partial" test ! -e "$W/e.partial"
finish
