// Memory read bandwidth: the roofline for decode GEMV (bench_matmul's "GB/s").
//
// Each thread sums its share of a 1 GiB buffer (far larger than any cache) with wide loads
// and independent accumulators, so the loop is bound by DRAM, not by the core. Reported as
// "GB/s" (1e9 B/s) for 1 and 2 threads through the same ThreadPool the kernels use.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/memory_bandwidth.h"
#include "core/thread_pool.h"

namespace {

constexpr size_t kBytes = size_t(1) << 30;
constexpr size_t kChunk = size_t(1) << 20;  // 1 MiB per task: many tasks, balanced threads

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
  std::vector<uint64_t> sums(kBytes / kChunk);
  for (auto _ : state) {
    pool.parallel_for(sums.size(), [&](size_t task, int) {
      const std::byte* p = base + task * kChunk;
      sums[task] = moe::sum_words(p, kChunk);
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(double(state.iterations()) * double(kBytes) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MemoryRead)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
