#!/usr/bin/env bash
# Runs on the GPU machine (the device tool), from the repository root, with .dev/cuda
# carried (bench/gpu_pack.sh made it): unpacks the binaries, then runs the steps named
# in the arguments, logging each under $OUT:
#   test      the CUDA kernel tests (tests/unit/test_cuda_kernels.c)
#   memcheck  the same under compute-sanitizer memcheck
#   bench     the kernel benchmarks (copy bandwidth, 7B decode GEMVs, prefill GEMMs)
#   modeltest the GPU forward pass against the CPU one (tests/unit/test_cuda_model.c)
#   cli       tests/cli/cuda_device.sh (bench and perplexity --device cuda)
#   ppl       full WikiText-2 perplexity of stories260K (float, GPTQ w4 g32 act-order) on CPU and GPU
#   nsys      a kernel trace of the 4-bit model's decode (after model), nsys-trace.csv
#   model     a random Llama-2-7B-shape model, RTN 4-bit g128, gptq bench on cuda (fp16 and 4-bit);
#             GPTQ_CUDA_PDL=0 in the environment measures without programmatic dependent launch
# Usage: bash .dev/cuda/gpu.sh test memcheck bench
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
D=/tmp/gptq-gpu
rm -rf "$D" && mkdir -p "$D" && tar -xJf "$here/pkg.tar.xz" -C "$D" || exit 1
cublas=$(find /usr/local/cuda*/ /usr/lib /opt -name 'libcublas.so.13*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$D/lib${cublas:+:$(dirname "$cublas")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv | tee "$OUT/device.txt"
echo "cublas: $cublas" | tee -a "$OUT/device.txt"
rc=0
for step in "$@"; do
  echo "=== $step ($(date -u +%T))"
  case $step in
    test) "$D/bin/test_cuda_kernels" 2>&1 | tee "$OUT/test.txt"; rc=$((rc | PIPESTATUS[0])) ;;
    memcheck) compute-sanitizer --tool memcheck --error-exitcode 9 "$D/bin/test_cuda_kernels" > "$OUT/memcheck.txt" 2>&1
              r=$?; tail -3 "$OUT/memcheck.txt"; rc=$((rc | r))
              GPTQ_SHARED=$D/shared GPTQ_BIN=$D/bin/gptq GPTQ_TMP=/tmp/gptq-test-mc OMP_NUM_THREADS=8 \
                compute-sanitizer --tool memcheck --error-exitcode 9 "$D/bin/test_cuda_model" > "$OUT/memcheck-model.txt" 2>&1
              r=$?; tail -3 "$OUT/memcheck-model.txt"; rc=$((rc | r)) ;;
    modeltest) GPTQ_SHARED=$D/shared GPTQ_BIN=$D/bin/gptq GPTQ_TMP=/tmp/gptq-test OMP_NUM_THREADS=8 \
                 "$D/bin/test_cuda_model" 2>&1 | tee "$OUT/modeltest.txt"; rc=$((rc | PIPESTATUS[0])) ;;
    cli) GPTQ_SHARED=$D/shared GPTQ_BIN=$D/bin/gptq GPTQ_TMP=/tmp/gptq-test bash "$D/tests/cuda_device.sh" 2>&1 | tee "$OUT/cli.txt"
         rc=$((rc | PIPESTATUS[0])) ;;
    ppl) W=$D/shared/data/wikitext-2-raw/wiki.test.raw; Q=/tmp/gptq-models/s260k-w4
         [ -d $Q ] || "$D/bin/gptq" quantize --model $D/shared/models/stories260K --out $Q --bits 4 --group 32 --act-order \
                        --calib $W --nsamples 32 --seqlen 256 > /dev/null 2>&1
         for mdl in $D/shared/models/stories260K $Q; do for dev in cpu cuda; do
           echo "$(basename $mdl) $dev: $(OMP_NUM_THREADS=16 "$D/bin/gptq" perplexity --model $mdl --data $W --device $dev --json | tail -1)"
         done; done | tee "$OUT/ppl.txt" ;;
    bench) GPTQ_BENCH=1 "$D/bin/test_cuda_kernels" 2>&1 | grep -E "^(bench|device)" | tee "$OUT/bench.txt" ;;
    ncu) # per-kernel profiles (isolated, caches flushed) of some decode kernels of the 4-bit model (after model)
      timeout 400 ncu --kernel-name "regex:${NCU_KERNELS:-qgemv_mma4|attention_split|add_rmsnorm|rope_kv}" \
        --launch-skip ${NCU_SKIP:-300} --launch-count ${NCU_COUNT:-12} \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats --section MemoryWorkloadAnalysis \
        "$D/bin/gptq" bench --device cuda --model /tmp/gptq-models/${NSYS_MODEL:-l7b-w4} --prompt-len 64 --gen 4 --reps 1 \
        > "$OUT/ncu.txt" 2>&1
      grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Block Limit (Registers|Shared)|Waves Per SM|Stall|One or More" "$OUT/ncu.txt" | head -150 ;;
    model)
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      for m in l7b-w4 l7b; do
        "$D/bin/gptq" bench --device cuda --model $M/$m --prompt-len 512 --gen 128 --reps 3 --json 2>&1 |
          tee "$OUT/bench-$m${GPTQ_CUDA_PDL:+-pdl$GPTQ_CUDA_PDL}.txt"
      done ;;
    nsys) # kernel trace of the 4-bit 7B decode (after the model step made the model): nsys-trace.csv
      ns=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys /usr/local/cuda*/nsight-systems*/bin/nsys 2>/dev/null | head -1)
      if [ -z "$ns" ]; then echo "no nsys"; continue; fi
      timeout 300 "$ns" profile --cuda-graph-trace=node -o /tmp/gptq-prof -f true "$D/bin/gptq" bench --device cuda \
        --model /tmp/gptq-models/${NSYS_MODEL:-l7b-w4} --prompt-len 512 --gen 16 --reps 1 > "$OUT/nsys.txt" 2>&1
      "$ns" stats --report cuda_gpu_trace --format csv -o /tmp/gptq-trace /tmp/gptq-prof.nsys-rep >> "$OUT/nsys.txt" 2>&1
      cp /tmp/gptq-trace*.csv "$OUT/nsys-trace.csv" 2>/dev/null; tail -3 "$OUT/nsys.txt"; ls -la "$OUT" ;;
    sass) cuobjdump -sass -fun '_ZN75_GLOBAL__N__' "$D/bin/test_cuda_kernels" > /dev/null 2>&1
          cuobjdump -sass "$D/bin/test_cuda_kernels" > "$OUT/sass.txt" 2>&1; grep -c "" "$OUT/sass.txt" ;;
    *) echo "unknown step $step"; rc=1 ;;
  esac
done
exit $rc
