#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and runs them.
#
#   bash tests/fuzz/run.sh TARGET SECONDS   # one target: safetensors st_index config tokenizer gptq_ckpt calib_jsonl gguf
#   bash tests/fuzz/run.sh all SECONDS      # every target, SECONDS each, two at a time
#   bash tests/fuzz/run.sh config,tokenizer SECONDS   # some of them
#
# Each run starts from the seeds (tests/fuzz/corpus/TARGET) plus what earlier runs found
# (build-fuzz/corpus/TARGET, not committed).  Crashes land in build-fuzz/artifacts/TARGET/;
# once fixed, copy the input to tests/fuzz/regress/TARGET/ so ctest keeps running it.
# Runs niced (FUZZ_NICE, default 19: the CI machine is shared); the summary lines give execs and coverage from
# libFuzzer's final stats.  Installs clang with apt-get if it is missing.
set -uo pipefail
cd "$(dirname "$0")/../.."
ALL=(safetensors st_index config tokenizer gptq_ckpt calib_jsonl gguf)
target=${1:-}; secs=${2:-60}
if [ -z "$target" ]; then sed -n '2,12p' "$0"; exit 2; fi
if [ "$target" = all ]; then targets=("${ALL[@]}"); else IFS=, read -r -a targets <<<"$target"; fi
for t in "${targets[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || { echo "unknown fuzz target '$t' (${ALL[*]})" >&2; exit 2; }
done

# clang + its libFuzzer/sanitizer runtimes + libomp (the library uses OpenMP)
need=()
command -v clang >/dev/null || need+=(clang)
dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed" || need+=(libclang-rt-14-dev)
dpkg-query -W -f='${Status}' libomp-dev 2>/dev/null | grep -q "install ok installed" || need+=(libomp-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "fuzz: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null || exit 1
fi

B=build-fuzz
CC=clang nice -n 19 cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGPTQ_FUZZ=ON -DGPTQ_CUDA=OFF >/dev/null || exit 1
nice -n 19 cmake --build $B -j2 --target "${targets[@]/#/fuzz_}" >/dev/null || { echo "fuzz build failed" >&2; exit 1; }

export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

run_one() {
  local t=$1 secs=$2
  local corpus=$B/corpus/$t art=$B/artifacts/$t/ log=$B/logs/$t.log
  mkdir -p "$corpus" "$art" "$B/logs"
  local dict=()
  [ -f tests/fuzz/json.dict ] && dict=(-dict=tests/fuzz/json.dict)
  local maxlen=16384
  [ "$t" = tokenizer ] && maxlen=65536
  [ "$t" = gptq_ckpt ] && maxlen=32768
  TMPDIR=$B nice -n "${FUZZ_NICE:-19}" "$B/tests/fuzz/fuzz_$t" "$corpus" "tests/fuzz/corpus/$t" -max_total_time="$secs" -print_final_stats=1 \
    -timeout=300 -rss_limit_mb=2048 -max_len=$maxlen -artifact_prefix="$art" "${dict[@]}" >"$log" 2>&1
  local rc=$?
  local execs cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
  local crashes
  crashes=$(find "$art" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  echo "$t: ${secs}s, ${execs:-?} execs, ${cov:-no coverage line}, exit $rc, $crashes crash/leak/timeout/oom input(s) in $art (log $log)"
  return $rc
}

rc=0
if [ ${#targets[@]} -eq 1 ]; then
  run_one "${targets[0]}" "$secs" || rc=1
else
  # two at a time: the machine has two cores and other work
  running=0
  for t in "${targets[@]}"; do
    if [ $running -ge 2 ]; then wait -n || rc=1; running=$((running - 1)); fi
    run_one "$t" "$secs" &
    running=$((running + 1))
  done
  while [ $running -gt 0 ]; do wait -n || rc=1; running=$((running - 1)); done
fi
exit $rc
