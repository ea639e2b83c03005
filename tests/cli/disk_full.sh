#!/usr/bin/env bash
# Disk full and unwritable output: every writer stops with an error naming the file and
# the cause, exits non-zero, and leaves nothing behind that looks like an output (no final
# directory or file, no temporary).  Needs root to mount a tiny tmpfs (skips otherwise).
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/disk_full
rm -rf "$W" && mkdir -p "$W/full" "$W/ro"
SRC=$SHARED/models/stories260K
CAL=$SHARED/data/calib/calib_mix.txt
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=64k tmpfs "$W/full" 2>/dev/null; then
  echo "skipped: cannot mount a tmpfs (needs root)"; exit 77
fi
mount -t tmpfs -o ro,size=1m tmpfs "$W/ro" || { umount "$W/full"; echo "skipped: cannot mount a read-only tmpfs"; exit 77; }
trap 'umount "$W/full" "$W/ro" 2>/dev/null' EXIT

# fails DESC PATTERN DIR CMD...: non-zero exit, last stderr line an error matching PATTERN,
# and DIR (the mount) left empty
fails() {
  local d=$1 pat=$2 dir=$3; shift 3
  local err rc last
  err=$("$@" 2>&1 >/dev/null); rc=$?
  last=$(printf '%s\n' "$err" | tail -n 1)
  if [ $rc -eq 0 ]; then bad "$d: exit code 0"; return; fi
  if [ $rc -ge 128 ]; then bad "$d: crashed (exit $rc): $err"; return; fi
  if ! printf '%s' "$last" | grep -Eq -- "^gptq: error: .*$pat"; then bad "$d: message '$last' does not match /$pat/"; return; fi
  if [ -n "$(ls -A "$dir")" ]; then bad "$d: left behind: $(ls -A "$dir")"; return; fi
  ok
}

NOSPACE="No space left on device"
fails "quantize (RTN) onto a full disk" "full/q\.tmp\.[0-9]+/model\.safetensors: write failed: $NOSPACE" "$W/full" \
  "$BIN" quantize --model "$SRC" --out "$W/full/q" --method rtn
fails "quantize --dump-dequantized onto a full disk" "full/d\.safetensors: write failed: $NOSPACE" "$W/full" \
  "$BIN" quantize --model "$SRC" --method rtn --dump-dequantized "$W/full/d.safetensors"
fails "random-model onto a full disk" "full/r\.tmp\.[0-9]+: not enough disk space" "$W/full" \
  "$BIN" random-model --shape "$SRC" --out "$W/full/r"

# GPTQ keeps the state of its finished blocks (OUT.partial, quant/resume.h) when the disk
# fills: no OUT, no temporaries; with room again, --resume gives the uninterrupted result.
GARGS=(--calib "$CAL" --nsamples 16 --seqlen 64)
mount -o remount,size=700k "$W/full" # room for the state (~0.4 MB), not for the checkpoint too (0.9 MB)
err=$("$BIN" quantize --model "$SRC" --out "$W/full/q" "${GARGS[@]}" 2>&1 >/dev/null); rc=$?
last=$(printf '%s\n' "$err" | tail -n 1)
check "GPTQ onto a full disk fails" test $rc -ne 0 -a $rc -lt 128
if printf '%s' "$last" | grep -Eq "^gptq: error: .*$NOSPACE"; then ok; else bad "GPTQ full disk message: $last"; fi
check "GPTQ onto a full disk: no output" test ! -e "$W/full/q"
if [ -z "$(find "$W/full" -name '*.tmp.*')" ]; then ok; else bad "GPTQ full disk left temporaries: $(find "$W/full" -name '*.tmp.*')"; fi
check "GPTQ full disk: the finished blocks are saved" python3 -c "
import json, sys; assert json.load(open(sys.argv[1]))['done'] > 0" "$W/full/q.partial/state.json"
mount -o remount,size=8m "$W/full"
check "GPTQ after freeing space: --resume completes" "$BIN" quantize --model "$SRC" --out "$W/full/q" "${GARGS[@]}" --resume
check "GPTQ uninterrupted, elsewhere" "$BIN" quantize --model "$SRC" --out "$W/gref" "${GARGS[@]}"
check "GPTQ resumed after a full disk = uninterrupted" diff -r "$W/gref" "$W/full/q"
check "no state left" test ! -e "$W/full/q.partial"
fails "quantize into a read-only file system" "ro/q.*Read-only file system" "$W/ro" \
  "$BIN" quantize --model "$SRC" --out "$W/ro/q" --method rtn
fails "quantize --report into a read-only file system" "ro/rep.*Read-only file system" "$W/ro" \
  "$BIN" quantize --model "$SRC" --method rtn --eval "$CAL" --eval-windows 1 --report "$W/ro/rep"
fails "random-model into a read-only file system" "ro/r.*Read-only file system" "$W/ro" \
  "$BIN" random-model --shape "$SRC" --out "$W/ro/r"

# the same commands succeed with room to write (the failures above are the disk's)
check "quantize with room" "$BIN" quantize --model "$SRC" --out "$W/ok" --method rtn
check "output complete" test -f "$W/ok/model.safetensors" -a -f "$W/ok/config.json"
finish
