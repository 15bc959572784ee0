#include "ops/cuda/launch.cuh"
#include "ops/cuda/dequantize.h"

#include <cuda_fp16.h>

namespace moe::cuda {
namespace {

constexpr int kQ8Block = 32;
constexpr int kQ8BlockBytes = 34;  // f16 scale + 32 int8

// One thread per value; the 32 threads of a warp share one block's scale.
__global__ void dequantize_q8_0_kernel(const uint8_t* __restrict__ blocks, float* __restrict__ out, int64_t n) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint8_t* block = blocks + (i / kQ8Block) * kQ8BlockBytes;
  const __half d = *reinterpret_cast<const __half*>(block);  // 2-byte aligned: blocks are 34 bytes
  const int8_t q = static_cast<int8_t>(block[2 + i % kQ8Block]);
  out[i] = __half2float(d) * float(q);
}

}  // namespace

cudaError_t launch_dequantize_q8_0(const void* blocks, float* out, int64_t n, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const auto grid = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  launch(dequantize_q8_0_kernel, grid, kThreads, 0, stream, static_cast<const uint8_t*>(blocks), out, n);
  return cudaGetLastError();
}

}  // namespace moe::cuda
