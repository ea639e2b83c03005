#!/usr/bin/env bash
# The whole test suite again under AddressSanitizer + UndefinedBehaviorSanitizer (gcc),
# built into build-sanitize/ (CMake preset "sanitize", option GPTQ_SANITIZE).  Any ASan,
# LSan or UBSan report fails its test.  Ends with "N passed, N failed" like test.sh.
# Assumes scripts/setup.sh has run (test.sh does; .ci/run runs test.sh first).
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
{ cmake --preset sanitize >/dev/null && cmake --build --preset sanitize -j"$(nproc)" >/dev/null; } ||
  { echo "sanitizer build failed"; echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
(cd build-sanitize && ctest --output-on-failure -j"$(nproc)" "$@") 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
rm -f "$log"
total=${total:-0}; failed=${failed:-0}
[ "$total" -eq 0 ] && [ "$rc" -ne 0 ] && failed=1
echo "sanitizer build + suite: $(( $(date +%s) - t0 )) s"
echo "$((total - failed)) passed, $failed failed"
exit $rc
