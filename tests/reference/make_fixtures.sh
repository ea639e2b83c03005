#!/usr/bin/env bash
# Regenerates the frozen reference fixtures in tests/fixtures/ (needs torch + transformers;
# CI does not run this, it only reads the JSON files).
#
# usage: tests/reference/make_fixtures.sh [SHARED_DIR]
#   SHARED_DIR defaults to ../shared relative to the repository root.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SHARED="${1:-$ROOT/../shared}"
PY="${PYTHON:-python3}"

if [ ! -d "$SHARED/models" ]; then
    echo "make_fixtures.sh: $SHARED/models not found" >&2
    exit 1
fi
SHARED="$(cd "$SHARED" && pwd)"

have_deps() {
    "$PY" -c 'import torch, transformers, safetensors, numpy, tokenizers' >/dev/null 2>&1
}

if ! have_deps; then
    echo "== installing torch (CPU), transformers, safetensors, numpy"
    # The CPU wheel index may be unreachable; fall back to plain PyPI.
    if ! "$PY" -m pip install --timeout 60 torch --index-url https://download.pytorch.org/whl/cpu; then
        echo "   (CPU wheel index unreachable, using PyPI)"
    fi
    "$PY" -m pip install torch transformers safetensors numpy tokenizers
    have_deps || { echo "make_fixtures.sh: dependencies still missing" >&2; exit 1; }
fi

cd "$ROOT"
echo "== model fixtures"
"$PY" tests/reference/model_fixtures.py "$SHARED"

if [ -f tests/reference/tokenizer_fixtures.py ]; then
    echo "== tokenizer fixtures"
    "$PY" tests/reference/tokenizer_fixtures.py "$SHARED"
else
    echo "== tests/reference/tokenizer_fixtures.py not present, skipped"
fi

echo "== done; fixtures in tests/fixtures/"
ls -l tests/fixtures/
