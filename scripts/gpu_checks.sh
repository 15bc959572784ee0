#!/usr/bin/env bash
# All GPU checks, run on the GPU machine in a few minutes; results as JSON in OUT_DIR.
#   scripts/gpu_checks.sh BUILD_DIR OUT_DIR
# BUILD_DIR is a CUDA build made elsewhere (scripts/build_gpu.sh) and carried over; shared
# libraries it needs that the GPU machine lacks are in BUILD_DIR/libs.
set -uo pipefail
build=${1:?usage: gpu_checks.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu_checks.sh BUILD_DIR OUT_DIR}
mkdir -p "$out"
export LD_LIBRARY_PATH="$build/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

status=0
run() {  # run NAME COMMAND...: records the exit code and the log
  local name=$1
  shift
  local start=$(date +%s.%N)
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local secs=$(echo "$(date +%s.%N) - $start" | bc)
  echo "{\"check\": \"$name\", \"exit_code\": $rc, \"seconds\": $secs}" >>"$out/checks.jsonl"
  echo "$name: exit $rc (${secs}s)"
  [ $rc -eq 0 ] || status=1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
run devices "$build/moeserve" devices
run test_cuda "$build/tests/cuda/test_cuda" --gtest_output="json:$out/test_cuda.json"
run sanitizer_memcheck compute-sanitizer --tool memcheck --error-exitcode 1 "$build/tests/cuda/test_cuda"
# The CPU kernels on this machine's CPU too (another vendor's AVX-512).
for t in core/test_core ops/test_ops gguf/test_gguf; do
  [ -x "$build/tests/$t" ] && run "$(basename $t)" "$build/tests/$t" --gtest_output="json:$out/$(basename $t).json"
done
exit $status
