#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs them:
#   fuzz_gguf       the GGUF parser, FUZZ_SECONDS (default 60)
#   fuzz_tokenizer  the tokenizer on the qwen2 vocabulary, FUZZ_SECONDS / 2
#   fuzz_safetensors the safetensors header parser (HF checkpoints for convert), FUZZ_SECONDS / 2
# Crashing inputs are written to build-fuzz/crashes/ and make the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOE_FUZZ=ON -DMOE_TESTS=OFF -DMOE_BENCH=OFF -DMOE_CUDA=OFF >/dev/null
ninja -C build-fuzz fuzz_gguf fuzz_tokenizer fuzz_safetensors make_gguf_seeds
mkdir -p build-fuzz/corpus/gguf build-fuzz/corpus/tokenizer build-fuzz/corpus/safetensors build-fuzz/crashes
cp fuzz/corpus/gguf/* build-fuzz/corpus/gguf/
cp fuzz/corpus/tokenizer/* build-fuzz/corpus/tokenizer/
cp fuzz/corpus/safetensors/* build-fuzz/corpus/safetensors/
./build-fuzz/fuzz/make_gguf_seeds build-fuzz/corpus/gguf
xz -dc tests/data/vocab/ggml-vocab-qwen2.gguf.xz >build-fuzz/qwen2.gguf

# rss_limit catches inputs that make a parser allocate by a lying count.
run() {
  local target=$1 corpus=$2 secs=$3
  echo "== $target for $secs s"
  ./build-fuzz/fuzz/"$target" "$corpus" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 2>&1 | tail -n 6
}
run fuzz_gguf build-fuzz/corpus/gguf "$seconds"
MOE_FUZZ_VOCAB=build-fuzz/qwen2.gguf run fuzz_tokenizer build-fuzz/corpus/tokenizer $((seconds / 2))
run fuzz_safetensors build-fuzz/corpus/safetensors $((seconds / 2))
