#include <algorithm>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/prefetch.h"

namespace moe::cuda {
namespace {

constexpr int kThreads = 32;
constexpr size_t kChunk = 32 << 10;  // bytes a request
constexpr int kMaxBlocks = 64;

struct Ranges {
  L2Range r[kMaxL2Ranges];
  int n = 0;
};

__device__ __forceinline__ void request(const char* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// Chunks c, c + step, ... of [p, p + bytes).
__device__ void request_chunks(const char* p, size_t bytes, size_t c, size_t step) {
  for (; c * kChunk < bytes; c += step) request(p + c * kChunk, unsigned(min(kChunk, bytes - c * kChunk)));
}

// Chunk g of all the ranges (numbered on across them) to thread g % (blocks x threads):
// neighbouring chunks from different blocks, so every block's requests start at once.
__global__ void __launch_bounds__(kThreads) prefetch_kernel(Ranges a) {
  const size_t first = size_t(threadIdx.x) * gridDim.x + blockIdx.x, step = size_t(gridDim.x) * kThreads;
  size_t c0 = 0;  // chunks of the ranges before this one
  for (int i = 0; i < a.n; ++i) {
    request_chunks(static_cast<const char*>(a.r[i].p), a.r[i].bytes, (first + step - c0 % step) % step, step);
    c0 += (a.r[i].bytes + kChunk - 1) / kChunk;
  }
}

}  // namespace

cudaError_t prefetch_l2(std::span<const L2Range> ranges, cudaStream_t stream) {
  if (ranges.size() > size_t(kMaxL2Ranges)) return cudaErrorInvalidValue;
  if (device_compute_major() < 9) return cudaSuccess;
  Ranges a;
  size_t chunks = 0;
  for (const L2Range& r : ranges) {
    // whole 16-byte units inside the range: the bulk request's alignment and size rule
    const auto begin = (reinterpret_cast<uintptr_t>(r.p) + 15) & ~uintptr_t(15);
    const auto end = (reinterpret_cast<uintptr_t>(r.p) + r.bytes) & ~uintptr_t(15);
    if (r.p == nullptr || end <= begin) continue;
    a.r[a.n++] = {reinterpret_cast<const void*>(begin), size_t(end - begin)};
    chunks += (size_t(end - begin) + kChunk - 1) / kChunk;
  }
  if (a.n == 0) return cudaSuccess;
  const int blocks = int(std::min<size_t>(kMaxBlocks, (chunks + kThreads - 1) / kThreads));
  prefetch_kernel<<<blocks, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace moe::cuda
