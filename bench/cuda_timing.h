#pragma once
// Timing shared by the GPU micro-benchmarks: replays timed with CUDA events on a stream, and
// the median of them.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include "ops/cuda/cuda_check.h"

namespace moe::bench {

// Microseconds of run() on `stream` divided by `per` (the steps one run holds): the median over
// `reps` runs, after two warm-ups.
template <typename Run>
double median_us(cudaStream_t stream, int reps, int per, Run&& run) {
  cudaEvent_t start, stop;
  MOE_CUDA_CHECK(cudaEventCreate(&start));
  MOE_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> us;
  for (int r = 0; r < reps + 2; ++r) {
    MOE_CUDA_CHECK(cudaEventRecord(start, stream));
    run();
    MOE_CUDA_CHECK(cudaEventRecord(stop, stream));
    MOE_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MOE_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (r >= 2) us.push_back(ms * 1e3 / per);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

// `--reps N` from the command line (at least 1), or `fallback`.
inline int reps_option(int argc, char** argv, int fallback = 9) {
  int reps = fallback;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
  }
  return reps;
}

// A benchmark's main(): run()'s exit code, or its error printed under the program's name.
template <typename Run>
int guarded(const char* name, Run&& run) {
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace moe::bench
