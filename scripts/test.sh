#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite; ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
(cd build && ctest --output-on-failure -j"$(nproc)" "$@") 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# ctest's summary: "NN% tests passed, F tests failed out of T"
total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
rm -f "$log"
total=${total:-0}; failed=${failed:-0}
[ "$total" -eq 0 ] && [ "$rc" -ne 0 ] && failed=1
echo "$((total - failed)) passed, $failed failed"
exit $rc
