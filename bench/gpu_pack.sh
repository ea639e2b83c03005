#!/usr/bin/env bash
# Packs this checkout's CUDA build for the device machine (which has the CUDA driver,
# toolkit and cuBLAS but none of our Debian libraries): build/ binaries plus the shared
# libraries they need from this machine, xz-compressed, into DEST (default
# /work/main/.dev/cuda, the folder the device tool carries), with bench/gpu.sh beside it.
# GPTQ_PACK_MODELS="llama-bpe-26m" adds those ../shared models (the GPU-vs-CPU quantization
# figures need llama-bpe-26m, ~50 MB of bf16: mind the device tool's 64 MiB carry limit).
# GPTQ_PACK_B=FILE adds another build of gptq as bin/gptq_b (gpu.sh abbin compares the two).
# Usage: bash bench/gpu_pack.sh [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-/work/main/.dev/cuda}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$dest"
cp build/gptq build/tests/test_cuda_kernels "$stage/bin/"
cp build/tests/test_cuda_model build/tests/test_cuda_gptq "$stage/bin/"
# GPTQ_PACK_B=path/to/gptq: a second build as bin/gptq_b, for gpu.sh step abbin (same libraries)
# (GPTQ_PACK_C, GPTQ_PACK_D likewise: bin/gptq_c, bin/gptq_d)
[ -z "${GPTQ_PACK_B:-}" ] || cp "$GPTQ_PACK_B" "$stage/bin/gptq_b"
[ -z "${GPTQ_PACK_C:-}" ] || cp "$GPTQ_PACK_C" "$stage/bin/gptq_c"
[ -z "${GPTQ_PACK_D:-}" ] || cp "$GPTQ_PACK_D" "$stage/bin/gptq_d"
mkdir -p "$stage/shared/models" "$stage/shared/data/wikitext-2-raw" "$stage/shared/data/calib" "$stage/tests"
cp -r ../shared/models/stories260K "$stage/shared/models/"
for m in ${GPTQ_PACK_MODELS:-}; do cp -r "../shared/models/$m" "$stage/shared/models/"; done
cp ../shared/data/wikitext-2-raw/wiki.test.raw "$stage/shared/data/wikitext-2-raw/"
cp ../shared/data/calib/calib_mix.txt "$stage/shared/data/calib/"
cp tests/cli/common.bash tests/cli/cuda_device.sh tests/cli/cuda_quantize.sh bench/cuda_edge_latency.cu bench/cuda_stream_gemv.cu bench/cuda_inflight.cu src/kernels/cuda/frag_mma.cuh bench/trace_summary.py "$stage/tests/"
# every non-system library of the binaries (glibc, libm, libgcc_s come from the device)
for l in $(ldd build/gptq build/tests/test_cuda_kernels | awk '/=> \//{print $3}' | sort -u); do
  case "$(basename "$l")" in libc.so*|libm.so*|libgcc_s.so*|libpthread*|libdl*|librt*|ld-linux*|libcuda.so*|libcublas*|libcusolver*|libcusparse*|libnvJitLink*) ;;
    *) cp -L "$l" "$stage/lib/" ;; esac
done
tar -C "$stage" -cJf "$dest/pkg.tar.xz" bin lib shared tests
cp bench/gpu.sh "$dest/gpu.sh"
du -sh "$dest"/*
