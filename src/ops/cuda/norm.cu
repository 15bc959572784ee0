// Row reductions: RMSNorm (one block of 256 threads per row), dot products with one vector.
#include "ops/cuda/launch.cuh"
#include "ops/cuda/ops.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float eps, int width,
                                float* out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const float* xr = x + int64_t(blockIdx.x) * width;
  float* yr = out + int64_t(blockIdx.x) * width;
  double sum = 0;
  for (int i = threadIdx.x; i < width; i += kThreads) sum += double(xr[i]) * xr[i];
  __shared__ double partial[kThreads / 32];
  sum = warp_sum(sum);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  double total = 0;
#pragma unroll
  for (int i = 0; i < kThreads / 32; ++i) total += partial[i];
  const float scale = float(1.0 / sqrt(total / double(width) + eps));
  for (int i = threadIdx.x; i < width; i += kThreads) yr[i] = xr[i] * scale * w[i];
}

// One warp per row.
__global__ void dot_rows_kernel(const float* __restrict__ x, const float* __restrict__ w, int n, int width,
                                float* out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int t = blockIdx.x * 4 + threadIdx.y;
  if (t >= n) return;
  double sum = 0;
  for (int i = threadIdx.x; i < width; i += 32) sum += double(w[i]) * x[int64_t(t) * width + i];
  sum = warp_sum(sum);
  if (threadIdx.x == 0) out[t] = float(sum);
}

}  // namespace

cudaError_t dot_rows(const float* x, const float* w, int n, int width, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  launch(dot_rows_kernel, unsigned((n + 3) / 4), dim3(32, 4), 0, stream, x, w, n, width, out);
  return cudaGetLastError();
}

cudaError_t rms_norm(const float* x, const float* w, float eps, int64_t rows, int width, float* out,
                     cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  launch(rms_norm_kernel, unsigned(rows), kThreads, 0, stream, x, w, eps, width, out);
  return cudaGetLastError();
}

}  // namespace moe::cuda
