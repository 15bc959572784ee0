// Elementwise ops: one thread per value.
#include "ops/cuda/ops.h"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

__global__ void swiglu_kernel(const float* g, const float* __restrict__ u, int64_t n, float* h) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const float v = g[i];
  h[i] = v / (1.0f + expf(-v)) * u[i];  // silu(g) * u, the CPU's expression
}

__global__ void add_kernel(float* y, const float* __restrict__ x, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) y[i] += x[i];
}

}  // namespace

cudaError_t swiglu(const float* g, const float* u, int64_t n, float* h, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  swiglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(g, u, n, h);
  return cudaGetLastError();
}

cudaError_t add(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, x, n);
  return cudaGetLastError();
}

}  // namespace moe::cuda
