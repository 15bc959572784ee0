// Weight relayout at upload: one thread per Q8_0 block.
#include "ops/cuda/launch.cuh"
#include "ops/cuda/layout.h"

namespace moe::cuda {
namespace {

__global__ void relayout_q8_0_split_kernel(const uint8_t* __restrict__ src, size_t src_stride, int64_t rows,
                                           int64_t cols, uint8_t* __restrict__ dst, size_t dst_stride) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t blocks = cols / 32, id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= rows * blocks) return;
  const int64_t r = id / blocks, b = id % blocks;
  const auto* in = reinterpret_cast<const uint16_t*>(src + r * src_stride + b * 34);  // 2-byte aligned
  auto* values = reinterpret_cast<uint16_t*>(dst + r * dst_stride + b * 32);
#pragma unroll
  for (int i = 0; i < 16; ++i) values[i] = in[1 + i];
  reinterpret_cast<uint16_t*>(dst + r * dst_stride + cols)[b] = in[0];
}

}  // namespace

cudaError_t relayout_q8_0_split(const void* src, size_t src_stride, int64_t rows, int64_t cols, void* dst,
                                size_t dst_stride, cudaStream_t stream) {
  if (cols % 32 != 0 || dst_stride < q8_0_split_stride(cols)) return cudaErrorInvalidValue;
  const int64_t n = rows * (cols / 32);
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  return launch(relayout_q8_0_split_kernel, unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream,
                static_cast<const uint8_t*>(src), src_stride, rows, cols, static_cast<uint8_t*>(dst), dst_stride);
}

}  // namespace moe::cuda
