#!/usr/bin/env bash
# Runs on the GPU machine (the device tool), from the repository root, with .dev/cuda
# carried (bench/gpu_pack.sh made it): unpacks the binaries, then runs the steps named
# in the arguments, logging each under $OUT:
#   test      the CUDA kernel tests (tests/unit/test_cuda_kernels.c)
#   memcheck  the same, test_cuda_model and test_cuda_gptq under compute-sanitizer memcheck
#             (MEMCHECK_NO_GPTQ=1: not test_cuda_gptq)
#   bench     the kernel benchmarks (copy bandwidth, 7B decode GEMVs, prefill GEMMs)
#   fbench    the 7B decode GEMVs layer by layer, tensor-core kernel against the fragment-order one
#   abench    the decode step parts of fbench with GPTQ_CUDA_ATT_PW 4, 2, 8 (positions per warp of the attention)
#   tbench    the 7B decode GEMVs at 4 bits with the codes in the qk and in the 16-row tile layout
#   ncu       Nsight Compute profiles (isolated) of decode kernels of the 4-bit 7B model (after model;
#             NCU_KERNELS, NCU_SKIP, NCU_COUNT choose them)
#   modeltest the GPU forward pass against the CPU one (tests/unit/test_cuda_model.c)
#   cli       tests/cli/cuda_device.sh (bench and perplexity --device cuda), tests/cli/cuda_quantize.sh
#   ppl       full WikiText-2 perplexity of stories260K (float, GPTQ w4 g32 act-order) on CPU and GPU
#   model     a random Llama-2-7B-shape model, RTN 4-bit g128, gptq bench on cuda (fp16 and 4-bit);
#             GPTQ_CUDA_PDL=0 in the environment measures without programmatic dependent launch,
#             GPTQ_CUDA_TILED=1 with the codes in the 16-row tile layout
#             (PROMPT=N, here and in ab, abbin, trace: an N-token prompt instead of 512)
#   ctx       decode against context length: 4-bit at prompts CTX_PROMPTS (1 128 512 1024), fp16 at CTX_F16_PROMPTS (1 512)
#   model4    the 4-bit model of `model` only, GPTQ_CUDA_TILED and GPTQ_CUDA_MMA_PF 0 / 1
#   modelf    the 4-bit model of `model` only, GPTQ_CUDA_FRAG=1 / 0 / 1 / 0 (fragment-order GEMV or not)
#   edge      what a kernel-to-kernel dependency costs (bench/cuda_edge_latency.cu, built there by nvcc)
#   stream    a chain of 32 dependent 7B-shaped 4-bit GEMVs: the register ring against a producer
#             warp streaming the codes into shared memory by bulk copies, bulk-copy probes, single
#             launches and clock counters of the consumers (bench/cuda_stream_gemv.cu)
#   ab        the 4-bit model of `model` only, with the environment variable named by AB_VAR at
#             each of AB_VALS (default 1 0 1 0: a switch's effect on decode)
#   abenv     the 4-bit model only, once per entry of AB_ENVS (VAR=v,VAR2=v2 or -), the list twice
#   abbin     the 4-bit model of `model` only, this build against others (bin/gptq_b, _c, _d, packed
#             with GPTQ_PACK_B / _C / _D=FILE), alternating a b ... a b ...
#   trace     the block timeline of one decode step of that model (GPTQ_CUDA_TRACE), summarized by
#             bench/trace_summary.py, once per VAR=VALUE of TRACE_VARS (BIN=gptq_b: the other build)
#   gptq      GPU GPTQ against the CPU's (tests/unit/test_cuda_gptq.c)
#   quant26m  llama-bpe-26m quantized on CPU, GPU and GPU --gpu-fp16 (calib_mix 128 x 512, seed 0;
#             w4 g128 act-order, w3 g128 sym without act-order), WikiText-2 perplexity of
#             each (the GPU evaluator), the per-layer reports (reports26m.tar.gz);
#             needs a pack made with GPTQ_PACK_MODELS=llama-bpe-26m
#   quant7b   a random Llama-2-7B-shape fp16 model (seed 1) quantized on the GPU, w4 g128 act-order,
#             128 x 2048 calibration tokens of WikiText-2 text: wall time, GPU memory high-water mark
#             (QUANT_EXTRA adds quantize options, e.g. QUANT_EXTRA=--gpu-fp16)
# Usage: bash .dev/cuda/gpu.sh test memcheck bench
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
D=/tmp/gptq-gpu
rm -rf "$D" && mkdir -p "$D" && tar -xJf "$here/pkg.tar.xz" -C "$D" || exit 1
cublas=$(find /usr/local/cuda*/ /usr/lib /opt -name 'libcublas.so.13*' 2>/dev/null | head -1)
cusolver=$(find /usr/local/cuda*/ /usr/lib /opt -name 'libcusolver.so.1[0-9]*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$D/lib${cublas:+:$(dirname "$cublas")}${cusolver:+:$(dirname "$cusolver")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv | tee "$OUT/device.txt"
echo "cublas: $cublas" | tee -a "$OUT/device.txt"
echo "cusolver: $cusolver" | tee -a "$OUT/device.txt"
rc=0
for step in "$@"; do
  echo "=== $step ($(date -u +%T))"
  case $step in
    test) "$D/bin/test_cuda_kernels" 2>&1 | tee "$OUT/test.txt"; rc=$((rc | PIPESTATUS[0])) ;;
    memcheck) compute-sanitizer --tool memcheck --error-exitcode 9 "$D/bin/test_cuda_kernels" > "$OUT/memcheck.txt" 2>&1
              r=$?; tail -3 "$OUT/memcheck.txt"; rc=$((rc | r))
              GPTQ_SHARED=$D/shared GPTQ_BIN=$D/bin/gptq GPTQ_TMP=/tmp/gptq-test-mc OMP_NUM_THREADS=8 \
                compute-sanitizer --tool memcheck --error-exitcode 9 "$D/bin/test_cuda_model" > "$OUT/memcheck-model.txt" 2>&1
              r=$?; tail -3 "$OUT/memcheck-model.txt"; rc=$((rc | r))
              [ -n "${MEMCHECK_NO_GPTQ:-}" ] && continue  # the GEMV work: kernels and forward pass only
              GPTQ_SHARED=$D/shared OMP_NUM_THREADS=8 compute-sanitizer --tool memcheck --error-exitcode 9 "$D/bin/test_cuda_gptq" \
                > "$OUT/memcheck-gptq.txt" 2>&1
              r=$?; tail -3 "$OUT/memcheck-gptq.txt"; rc=$((rc | r)) ;;
    modeltest) GPTQ_SHARED=$D/shared GPTQ_BIN=$D/bin/gptq GPTQ_TMP=/tmp/gptq-test OMP_NUM_THREADS=8 \
                 "$D/bin/test_cuda_model" 2>&1 | tee "$OUT/modeltest.txt"; rc=$((rc | PIPESTATUS[0])) ;;
    cli) for t in cuda_device cuda_quantize; do
           GPTQ_SHARED=$D/shared GPTQ_BIN=$D/bin/gptq GPTQ_TMP=/tmp/gptq-test bash "$D/tests/$t.sh" 2>&1 | tee -a "$OUT/cli.txt"
           rc=$((rc | PIPESTATUS[0])); done ;;
    ppl) W=$D/shared/data/wikitext-2-raw/wiki.test.raw; Q=/tmp/gptq-models/s260k-w4
         [ -d $Q ] || "$D/bin/gptq" quantize --model $D/shared/models/stories260K --out $Q --bits 4 --group 32 --act-order \
                        --calib $W --nsamples 32 --seqlen 256 > /dev/null 2>&1
         for mdl in $D/shared/models/stories260K $Q; do for dev in cpu cuda; do
           echo "$(basename $mdl) $dev: $(OMP_NUM_THREADS=16 "$D/bin/gptq" perplexity --model $mdl --data $W --device $dev --json | tail -1)"
         done; done | tee "$OUT/ppl.txt" ;;
    bench) GPTQ_BENCH=1 "$D/bin/test_cuda_kernels" 2>&1 | grep -E "^(bench|device)" | tee "$OUT/bench.txt" ;;
    fbench) GPTQ_BENCH=frag "$D/bin/test_cuda_kernels" 2>&1 | grep -E "^(bench|device)" | tee "$OUT/fbench.txt" ;;
    abench) for pw in 4 2 8; do echo "GPTQ_CUDA_ATT_PW=$pw"
        GPTQ_CUDA_ATT_PW=$pw GPTQ_BENCH=frag "$D/bin/test_cuda_kernels" 2>&1 | grep -E "^bench step" | tee -a "$OUT/abench.txt"; done ;;
    tbench) GPTQ_BENCH=tiled "$D/bin/test_cuda_kernels" 2>&1 | grep -E "^(bench|device)" | tee "$OUT/tbench.txt" ;;
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
        "$D/bin/gptq" bench --device cuda --model $M/$m --prompt-len ${PROMPT:-512} --gen 128 --reps 3 --json 2>&1 |
          tee "$OUT/bench-$m${GPTQ_CUDA_PDL:+-pdl$GPTQ_CUDA_PDL}${GPTQ_CUDA_TILED:+-tiled$GPTQ_CUDA_TILED}.txt"
      done ;;
    ctx) # decode against context: the 4-bit model at prompts of CTX_PROMPTS (default 1 128 512 1024), fp16 at 1 and 512
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      for p in ${CTX_PROMPTS:-1 128 512 1024}; do
        echo "l7b-w4 prompt $p"
        "$D/bin/gptq" bench --device cuda --model $M/l7b-w4 --prompt-len $p --gen 128 --reps 3 --json 2>&1 | tail -1 | tee -a "$OUT/ctx-l7b-w4.txt"
      done
      for p in ${CTX_F16_PROMPTS:-1 512}; do
        echo "l7b prompt $p"
        "$D/bin/gptq" bench --device cuda --model $M/l7b --prompt-len $p --gen 128 --reps 3 --json 2>&1 | tail -1 | tee -a "$OUT/ctx-l7b.txt"
      done ;;
    model4) # the 4-bit model only, codes in the qk layout and in the 16-row tile layout (after model or alone)
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      for cfg in 0:0 1:1 0:1 1:0 0:0 1:1; do
        echo "GPTQ_CUDA_TILED=${cfg%:*} GPTQ_CUDA_MMA_PF=${cfg#*:}"
        GPTQ_CUDA_TILED=${cfg%:*} GPTQ_CUDA_MMA_PF=${cfg#*:} "$D/bin/gptq" bench --device cuda --model $M/l7b-w4 --prompt-len ${PROMPT:-512} \
          --gen 128 --reps 3 --json 2>&1 | tail -1 | tee -a "$OUT/bench-l7b-w4-tiled${cfg%:*}-pf${cfg#*:}.txt"
      done ;;
    modelf) # the 4-bit model only, with and without the fragment-order GEMV (after model or alone)
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      for f in 1 0 1 0; do
        echo "GPTQ_CUDA_FRAG=$f"
        GPTQ_CUDA_FRAG=$f "$D/bin/gptq" bench --device cuda --model $M/l7b-w4 --prompt-len ${PROMPT:-512} --gen 128 --reps 3 --json 2>&1 |
          tail -1 | tee -a "$OUT/bench-l7b-w4-frag$f.txt"
      done ;;
    edge) nvcc -O3 -arch=sm_90 -o "$D/edge" "$D/tests/cuda_edge_latency.cu" && "$D/edge" | tee "$OUT/edge.txt"
          rc=$((rc | PIPESTATUS[0])) ;;
    inflight) nvcc -O3 -arch=sm_90 -std=c++17 -I "$D/tests" -o "$D/inflight" "$D/tests/cuda_inflight.cu" && "$D/inflight" ${INFLIGHT_ARGS:-} | tee "$OUT/inflight${INFLIGHT_ARGS:-}.txt"
          rc=$((rc | PIPESTATUS[0])) ;;
    stream) nvcc -O3 -arch=sm_90 -std=c++17 -o "$D/stream" "$D/tests/cuda_stream_gemv.cu" && "$D/stream" | tee "$OUT/stream.txt"
          rc=$((rc | PIPESTATUS[0])) ;;
    ab) # the 4-bit model only, $AB_VAR = each of $AB_VALS (default 1 0 1 0; after model or alone; AB_BIN=gptq_b: that build)
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      for f in ${AB_VALS:-1 0 1 0}; do
        echo "${AB_VAR:?AB_VAR names the variable}=$f"
        env "$AB_VAR=$f" "$D/bin/${AB_BIN:-gptq}" bench --device cuda --model $M/l7b-w4 --prompt-len ${PROMPT:-512} --gen 128 --reps 3 --json 2>&1 |
          tail -1 | tee -a "$OUT/bench-l7b-w4-$AB_VAR$f.txt"
      done ;;
    abenv) # the 4-bit model only, once per entry of AB_ENVS (space-separated; an entry is VAR=v[,VAR2=v2...],
           # "-" for none), the whole list twice: several switches' effects in one call
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      for e in ${AB_ENVS:?AB_ENVS lists the settings} $AB_ENVS; do
        echo "env $e"
        [ "$e" = - ] && vars=() || IFS=, read -r -a vars <<< "$e"
        env "${vars[@]}" "$D/bin/gptq" bench --device cuda --model $M/l7b-w4 --prompt-len ${PROMPT:-512} --gen 128 --reps 3 --json 2>&1 |
          tail -1 | tee -a "$OUT/bench-l7b-w4-env.txt"
      done ;;
    abbin) # the 4-bit model only, this build against bin/gptq_b (GPTQ_PACK_B), alternating A B A B
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      builds=a; for f in b c d; do [ -x "$D/bin/gptq_$f" ] && builds="$builds $f"; done
      for f in $builds $builds; do
        bin="$D/bin/gptq"; [ $f = a ] || bin="$D/bin/gptq_$f"
        echo "build $f"
        "$bin" bench --device cuda --model $M/l7b-w4 --prompt-len ${PROMPT:-512} --gen 128 --reps 3 --json 2>&1 | tail -1 | tee -a "$OUT/bench-l7b-w4-build$f.txt"
      done ;;
    trace) # block timeline of decode step 200 of the 4-bit model (bench/trace_summary.py), $TRACE_VARS each (default: as is)
      M=/tmp/gptq-models; mkdir -p $M
      [ -d $M/l7b ] || "$D/bin/gptq" random-model --shape llama2-7b --out $M/l7b 2>&1 | tail -2
      [ -d $M/l7b-w4 ] || "$D/bin/gptq" quantize --model $M/l7b --out $M/l7b-w4 --method rtn --bits 4 --group 128 2>&1 | tail -2
      k=0
      for v in ${TRACE_VARS:-NONE=0}; do
        k=$((k + 1)); echo "== trace $k: $v"
        bin="$D/bin/${TRACE_BIN:-gptq}"; case $v in BIN=*) bin="$D/bin/${v#BIN=}"; v=NONE=0 ;; esac  # BIN=gptq_b: the other build
        env "$v" GPTQ_CUDA_TRACE="$OUT/trace$k.txt" "$bin" bench --device cuda --model $M/l7b-w4 --prompt-len ${PROMPT:-512} --gen 128 \
          --reps 1 --json 2>&1 | tail -1 | grep -o '"decode_ms_per_token": [0-9.]*'
        python3 "$D/tests/trace_summary.py" "$OUT/trace$k.txt" | tee "$OUT/trace$k-summary.txt"
      done ;;
    gptq) GPTQ_SHARED=$D/shared OMP_NUM_THREADS=16 "$D/bin/test_cuda_gptq" 2>&1 | tee "$OUT/gptq-test.txt"; rc=$((rc | PIPESTATUS[0])) ;;
    quant26m)
      W=$D/shared/data/wikitext-2-raw/wiki.test.raw; C=$D/shared/data/calib/calib_mix.txt; M=$D/shared/models/llama-bpe-26m
      for set in "w4g128act:--bits 4 --group 128 --act-order" "w3g128sym:--bits 3 --group 128 --sym --no-act-order"; do
        tag=${set%%:*}; args=${set#*:}
        for dev in cpu cuda cuda-fp16; do
          Q=/tmp/gptq-models/26m-$tag-$dev; rm -rf $Q; dargs="--device ${dev%-fp16}"; [ $dev = cuda-fp16 ] && dargs="$dargs --gpu-fp16"
          q=$(OMP_NUM_THREADS=16 "$D/bin/gptq" quantize --model $M --out $Q $args --calib $C --nsamples 128 --seqlen 512 \
                --seed 0 $dargs --report $Q-report --json 2>>"$OUT/quant26m.err" | tail -1)
          p=$("$D/bin/gptq" perplexity --model $Q --data $W --device cuda --json 2>>"$OUT/quant26m.err" | tail -1)
          echo "$tag $dev quantize: $q"; echo "$tag $dev ppl: $p"
        done
      done 2>&1 | tee "$OUT/quant26m.txt"
      (cd /tmp/gptq-models && tar -czf "$OUT/reports26m.tar.gz" 26m-*-report/*.csv)
      echo "ppl of the float model: $("$D/bin/gptq" perplexity --model $M --data $W --device cuda --json 2>/dev/null | tail -1)" \
        | tee -a "$OUT/quant26m.txt" ;;
    quant7b)
      M=/tmp/gptq-models; mkdir -p $M; W=$D/shared/data/wikitext-2-raw/wiki.test.raw
      [ -d $M/l7b-f16 ] || "$D/bin/gptq" random-model --shape llama2-7b --dtype f16 --out $M/l7b-f16 --seed 1 2>&1 | tail -2
      rm -rf $M/l7b-gptq; sync
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/quant7b-smi.txt" 2>/dev/null & smi=$!
      t0=$(date +%s.%N)
      OMP_NUM_THREADS=16 "$D/bin/gptq" quantize --model $M/l7b-f16 --out $M/l7b-gptq --bits 4 --group 128 --act-order \
        --calib $W --nsamples 128 --seqlen 2048 --seed 0 --device cuda ${QUANT_EXTRA:-} --json 2>&1 | tee "$OUT/quant7b.txt"
      r=${PIPESTATUS[0]}; t1=$(date +%s.%N); kill $smi 2>/dev/null; rc=$((rc | r))
      echo "end-to-end wall $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s; nvidia-smi peak memory.used $(sort -n "$OUT/quant7b-smi.txt" | tail -1) MiB" \
        | tee -a "$OUT/quant7b.txt"
      du -sh $M/l7b-gptq | tee -a "$OUT/quant7b.txt" ;;
    sass) cuobjdump -sass -fun '_ZN75_GLOBAL__N__' "$D/bin/test_cuda_kernels" > /dev/null 2>&1
          cuobjdump -sass "$D/bin/test_cuda_kernels" > "$OUT/sass.txt" 2>&1; grep -c "" "$OUT/sass.txt" ;;
    *) echo "unknown step $step"; rc=1 ;;
  esac
done
exit $rc
