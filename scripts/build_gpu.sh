#!/usr/bin/env bash
# Builds what scripts/gpu_checks.sh runs (CUDA for sm_90) into build-gpu/, with the shared
# libraries the GPU machine may lack, and stages both in build-gpu/stage: carry that there and
# run `scripts/gpu_checks.sh build-gpu/stage OUT_DIR`.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DMOE_BENCH=ON >/dev/null
ninja -C build-gpu moeserve test_cuda test_core test_ops test_engine test_gguf bench_matmul bench_memory bench_cuda_matvec bench_cuda_decode_ops bench_cuda_sync bench_expert_sum
mkdir -p build-gpu/libs
# The cache listed once: `ldconfig -p | awk '... exit'` dies of SIGPIPE now and then, and under
# pipefail that ended the script before the staging below, silently.
cache=$(ldconfig -p)
for lib in libspdlog.so.1.10 libfmt.so.9 libpcre2-8.so.0 libbenchmark.so.1debian; do
  src=$(awk -v l="$lib" '$1 == l {print $NF; exit}' <<<"$cache")
  if [ -n "$src" ]; then cp -L "$src" build-gpu/libs/; fi  # (a bare `&&` here ends the script under set -e)
done
# What the GPU machine needs, and nothing else (the working tree that travels is limited):
# build-gpu/stage mirrors the build tree's layout for these files.
rm -rf build-gpu/stage
for f in moeserve tests/cuda/test_cuda tests/core/test_core tests/ops/test_ops tests/engine/test_engine tests/gguf/test_gguf \
  bench/bench_matmul bench/bench_memory bench/bench_cuda_matvec bench/bench_cuda_decode_ops bench/bench_cuda_sync \
  bench/bench_expert_sum; do
  mkdir -p "build-gpu/stage/$(dirname "$f")" && cp "build-gpu/$f" "build-gpu/stage/$f"
done
cp -r build-gpu/libs build-gpu/stage/libs

