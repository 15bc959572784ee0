#!/usr/bin/env bash
# Builds what scripts/gpu_checks.sh runs (CUDA for sm_90) into build-gpu/, and copies the
# shared libraries the GPU machine may lack into build-gpu/libs. Carry build-gpu there.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DMOE_BENCH=ON >/dev/null
ninja -C build-gpu moeserve test_cuda test_core test_ops test_gguf bench_matmul bench_memory bench_cuda_matvec
mkdir -p build-gpu/libs
for lib in libspdlog.so.1.10 libfmt.so.9 libpcre2-8.so.0 libbenchmark.so.1debian; do
  src=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
  [ -n "$src" ] && cp -L "$src" build-gpu/libs/
done
