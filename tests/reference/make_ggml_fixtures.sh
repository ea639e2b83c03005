#!/usr/bin/env bash
# Regenerates tests/fixtures/ggml_blocks.bin from ggml's own quantizers.
# Needs a built llama.cpp checkout (not part of this repository):
#   LLAMA_CPP=/path/to/llama.cpp (default /work/llama.cpp), built in $LLAMA_CPP/build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LLAMA_CPP=${LLAMA_CPP:-/work/llama.cpp}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lib=$(dirname "$(find "$LLAMA_CPP/build" -name 'libggml-base.so' | head -1)")
cc -O2 -std=c11 -I"$LLAMA_CPP/ggml/include" "$here/ggml_blocks_fixture.c" -L"$lib" -Wl,-rpath,"$lib" -lggml-base -lm \
   -o "$tmp/gen"
"$tmp/gen" "$here/../fixtures/ggml_blocks.bin"
echo "wrote tests/fixtures/ggml_blocks.bin (llama.cpp $(git -C "$LLAMA_CPP" rev-parse --short HEAD))"
