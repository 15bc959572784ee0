#include "core/memory_bandwidth.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "core/cpu_features.h"

namespace moe {
namespace {

constexpr size_t kChunk = size_t(1) << 20;  // 1 MiB a task: many tasks, balanced threads

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

}  // namespace

uint64_t sum_words(const std::byte* p, size_t bytes) {
  static const bool avx2 = cpu_features().avx2;
  return avx2 ? sum_avx2(p, bytes) : sum_plain(p, bytes);
}

double measure_ram_read_gb_s(ThreadPool& pool, size_t bytes, int passes) {
  const size_t n_chunks = std::max<size_t>(1, bytes / kChunk);
  const size_t total = n_chunks * kChunk;
  const auto storage = std::make_unique<std::byte[]>(total + 64);
  const auto addr = reinterpret_cast<uintptr_t>(storage.get());
  std::byte* base = storage.get() + (64 - addr % 64) % 64;  // aligned for the wide loads
  std::memset(base, 1, total);                              // every page exists before timing
  std::vector<uint64_t> sums(n_chunks);
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(n_chunks, [&](size_t task, int) { sums[task] = sum_words(base + task * kChunk, kChunk); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, double(total) / 1e9 / std::max(seconds, 1e-9));
  }
  volatile uint64_t keep = 0;  // the sums are used: the reads cannot be optimized away
  for (uint64_t s : sums) keep = keep + s;
  return best;
}

}  // namespace moe
