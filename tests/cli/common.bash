# Helpers for CLI tests (sourced). Each test counts checks and ends with `finish`,
# which prints "N passed, N failed" and exits non-zero on any failure.
set -u
PASS=0
FAIL=0
BIN=${GPTQ_BIN:-build/gptq}
SHARED=${GPTQ_SHARED:-../shared}
TMP=${GPTQ_TMP:-/tmp/gptq-test}

need_shared() {
  if [ ! -d "$SHARED/models" ]; then echo "skipped: $SHARED not found"; exit 77; fi
}

ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*" >&2; }

# check DESC CMD...: passes if CMD exits 0
check() { local d=$1; shift; if "$@"; then ok; else bad "$d"; fi; }

# expect_error DESC PATTERN CMD...: CMD must exit non-zero, print exactly one line on
# stderr, and that line must match the extended regex PATTERN.
expect_error() {
  local d=$1 pat=$2; shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  local lines
  lines=$(printf '%s' "$err" | grep -c '')
  if [ $rc -eq 0 ]; then bad "$d: exit code 0"; return; fi
  if [ $rc -ge 128 ]; then bad "$d: crashed (exit $rc): $err"; return; fi
  if [ "$lines" -ne 1 ]; then bad "$d: expected one line on stderr, got $lines: $err"; return; fi
  if ! printf '%s' "$err" | grep -Eq -- "$pat"; then bad "$d: message '$err' does not match /$pat/"; return; fi
  ok
}

finish() {
  echo "$PASS passed, $FAIL failed"
  [ $FAIL -eq 0 ]
  exit $?
}
