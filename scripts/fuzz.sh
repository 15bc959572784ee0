#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for FUZZ_SECONDS (default 60).
# Crashing inputs are written to build-fuzz/crashes/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOE_FUZZ=ON -DMOE_TESTS=OFF -DMOE_BENCH=OFF -DMOE_CUDA=OFF >/dev/null
ninja -C build-fuzz fuzz_gguf make_gguf_seeds
mkdir -p build-fuzz/corpus/gguf build-fuzz/crashes
cp fuzz/corpus/gguf/* build-fuzz/corpus/gguf/
./build-fuzz/fuzz/make_gguf_seeds build-fuzz/corpus/gguf
# rss_limit catches inputs that make the parser allocate by a lying count.
./build-fuzz/fuzz/fuzz_gguf build-fuzz/corpus/gguf -max_total_time="$seconds" -rss_limit_mb=1024 \
  -max_len=65536 -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 2>&1 | tail -n 12
