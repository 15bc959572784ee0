#!/usr/bin/env bash
# Runs every test: the unit and CLI tests (ctest) on the release build, the same tests built with
# AddressSanitizer + UndefinedBehaviorSanitizer, and the GGUF fuzzer for FUZZ_SECONDS (60).
#   scripts/test.sh           everything (what CI runs)
#   scripts/test.sh --quick   only the release build's ctest
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
quick=0
[ "${1:-}" = "--quick" ] && quick=1

./scripts/setup.sh
echo "== tests (release build)"
ctest --test-dir build --output-on-failure -j "$jobs"
if ((quick)); then exit 0; fi

echo "== tests (ASan + UBSan build)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_SANITIZE=ON -DMOE_CUDA=OFF \
  -DMOE_BENCH=OFF >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== fuzzing the GGUF parser (${FUZZ_SECONDS:-60} s)"
./scripts/fuzz.sh
