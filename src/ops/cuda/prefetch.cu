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

// Chunk c of all the ranges to thread c % (blocks x threads): neighbouring chunks from
// different blocks, so every block's requests start at once.
__global__ void __launch_bounds__(kThreads) prefetch_kernel(Ranges a) {
  const size_t first = size_t(threadIdx.x) * gridDim.x + blockIdx.x, step = size_t(gridDim.x) * kThreads;
  size_t c0 = 0;  // chunks of the ranges before this one
  for (int i = 0; i < a.n; ++i) {
    const auto* p = static_cast<const char*>(a.r[i].p);
    const size_t chunks = (a.r[i].bytes + kChunk - 1) / kChunk;
    for (size_t c = first >= c0 ? first - c0 : (step - (c0 - first) % step) % step; c < chunks; c += step) {
      request(p + c * kChunk, unsigned(min(kChunk, a.r[i].bytes - c * kChunk)));
    }
    c0 += chunks;
  }
}

// A block an id: its threads take the id's chunks in turn.
__global__ void __launch_bounds__(kThreads)
    prefetch_rows_kernel(const char* base, size_t stride, size_t bytes, const int32_t* ids) {
  const int32_t id = ids[blockIdx.x];
  if (id < 0) return;
  const char* p = base + size_t(id) * stride;
  for (size_t off = size_t(threadIdx.x) * kChunk; off < bytes; off += size_t(kThreads) * kChunk) {
    request(p + off, unsigned(min(kChunk, bytes - off)));
  }
}

}  // namespace

cudaError_t prefetch_l2_rows(const void* base, size_t stride, size_t bytes, const int32_t* ids, int n_ids,
                             cudaStream_t stream) {
  if (n_ids < 0 || n_ids > kMaxL2Ids || (n_ids > 0 && ids == nullptr)) return cudaErrorInvalidValue;
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || stride % 16 != 0) return cudaErrorInvalidValue;
  if (device_compute_major() < 9 || n_ids == 0 || bytes < 16) return cudaSuccess;
  prefetch_rows_kernel<<<n_ids, kThreads, 0, stream>>>(static_cast<const char*>(base), stride, bytes & ~size_t(15),
                                                       ids);
  return cudaGetLastError();
}

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
