// Dispatch overhead of ThreadPool::parallel_for: a decode step issues hundreds of these, so
// the cost of publishing a job and waiting for every worker bounds per-layer latency.
#include <benchmark/benchmark.h>

#include <atomic>
#include <vector>

#include "core/thread_pool.h"

namespace {

// Empty tasks: the pure cost of one round trip through the pool.
void BM_DispatchEmpty(benchmark::State& state) {
  moe::ThreadPool pool(static_cast<int>(state.range(0)));
  const size_t n_tasks = static_cast<size_t>(state.range(1));
  for (auto _ : state) {
    pool.parallel_for(n_tasks, [](size_t, int) {});
  }
}
BENCHMARK(BM_DispatchEmpty)->ArgsProduct({{1, 2}, {1, 2, 16, 256}})->UseRealTime();

// Small real work (1 KiB summed per task), as a norm or a small GEMV chunk would be.
void BM_DispatchSmallWork(benchmark::State& state) {
  moe::ThreadPool pool(static_cast<int>(state.range(0)));
  std::vector<float> data(64 * 256, 1.0f);
  std::vector<float> out(64);
  for (auto _ : state) {
    pool.parallel_for(64, [&](size_t task, int) {
      float s = 0;
      for (int i = 0; i < 256; ++i) s += data[task * 256 + i];
      out[task] = s;
    });
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_DispatchSmallWork)->Arg(1)->Arg(2)->UseRealTime();

// Waking workers that went to sleep (spin disabled): the cost after an idle period.
void BM_DispatchFromSleep(benchmark::State& state) {
  moe::ThreadPool pool(2);
  pool.set_spin_us(0);
  for (auto _ : state) {
    pool.parallel_for(2, [](size_t, int) {});
  }
}
BENCHMARK(BM_DispatchFromSleep)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
