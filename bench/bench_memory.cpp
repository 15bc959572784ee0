// Memory read bandwidth: the roofline for decode GEMV (bench_matmul's "GB/s").
//
// Each thread sums its share of a 1 GiB buffer (far larger than any cache) with wide loads
// and independent accumulators, so the loop is bound by DRAM, not by the core. Reported as
// "GB/s" (1e9 B/s) for 1 and 2 threads through the same ThreadPool the kernels use.
#include <benchmark/benchmark.h>

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "core/thread_pool.h"

namespace {

constexpr size_t kBytes = size_t(1) << 30;
constexpr size_t kChunk = size_t(1) << 20;  // 1 MiB per task: many tasks, balanced threads

// Built for AVX2 and only called when the CPU has it (the rest of the file is baseline x86-64).
__attribute__((target("avx2"))) uint64_t sum_avx2(const std::byte* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t lanes[4];
  std::memcpy(lanes, &s, sizeof lanes);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t sum_plain(const std::byte* p, size_t n) {
  uint64_t a[4] = {};
  for (size_t i = 0; i < n; i += 32) {
    for (int j = 0; j < 4; ++j) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * j, 8);
      a[j] += v;
    }
  }
  return a[0] + a[1] + a[2] + a[3];
}

void BM_MemoryRead(benchmark::State& state) {
  static std::vector<std::byte> buffer;
  if (buffer.empty()) {
    buffer.resize(kBytes + 64);
    std::memset(buffer.data(), 1, buffer.size());  // touch every page before timing
  }
  // 64-byte aligned start for the aligned loads.
  const auto addr = reinterpret_cast<uintptr_t>(buffer.data());
  const std::byte* base = buffer.data() + ((64 - addr % 64) % 64);
  moe::ThreadPool pool(static_cast<int>(state.range(0)));
  const bool avx2 = moe::cpu_features().avx2;
  std::vector<uint64_t> sums(kBytes / kChunk);
  for (auto _ : state) {
    pool.parallel_for(sums.size(), [&](size_t task, int) {
      const std::byte* p = base + task * kChunk;
      sums[task] = avx2 ? sum_avx2(p, kChunk) : sum_plain(p, kChunk);
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(double(state.iterations()) * double(kBytes) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MemoryRead)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
