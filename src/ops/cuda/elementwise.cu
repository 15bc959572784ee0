// Elementwise ops: one thread per value.
#include "ops/cuda/launch.cuh"
#include "ops/cuda/combine.cuh"
#include "ops/cuda/ops.h"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

__global__ void swiglu_kernel(const float* g, const float* __restrict__ u, int64_t n, float* h) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const float v = g[i];
  h[i] = silu(v) * u[i];  // the CPU's expression
}

__global__ void swiglu_pairs_kernel(const float* __restrict__ y, int64_t rows, int64_t width, float* __restrict__ h) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= rows * width) return;
  const int64_t r = i / width, c = i % width;
  const float g = y[r * 2 * width + c];
  h[i] = silu(g) * y[r * 2 * width + width + c];
}

__global__ void add_kernel(float* y, const float* __restrict__ x, int64_t n) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) y[i] += x[i];
}

__global__ void repeat_rows_kernel(const float* __restrict__ x, int n, int k, int64_t width, float* __restrict__ out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= int64_t(n) * k * width) return;
  out[i] = x[(i / width) / k * width + i % width];
}

// A thread a pair of values (width even).
__global__ void combine_kernel(CombineRows c, int n, int64_t width, float* __restrict__ out, bool accumulate) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x, pairs = width / 2;
  if (i >= int64_t(n) * pairs) return;
  const float2 sum = combine_pair(c, i / pairs, i % pairs, width);
  float2& o = reinterpret_cast<float2*>(out)[i];
  o = accumulate ? float2{o.x + sum.x, o.y + sum.y} : sum;
}

__global__ void split_gated_heads_kernel(const float* __restrict__ qg, int64_t rows, int head_dim, float* __restrict__ q,
                                         float* __restrict__ gate) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= rows * head_dim) return;
  const int64_t r = i / head_dim, c = i % head_dim;
  q[i] = qg[r * 2 * head_dim + c];
  gate[i] = qg[r * 2 * head_dim + head_dim + c];
}

__global__ void split_columns_kernel(const float* __restrict__ in, int n, int64_t a, int64_t b, int64_t c,
                                     float* __restrict__ out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t width = a + b + c, i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n * width) return;
  const int64_t t = i / width, col = i % width;
  float* dst = col < a ? out + t * a + col
               : col < a + b ? out + n * a + t * b + (col - a)
                             : out + n * (a + b) + t * c + (col - a - b);
  *dst = in[i];
}

__global__ void sigmoid_mul_kernel(float* x, const float* __restrict__ gate, int64_t n) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i < n) x[i] *= sigmoid(gate[i]);
}

}  // namespace

cudaError_t repeat_rows(const float* x, int n, int k, int64_t width, float* out, cudaStream_t stream) {
  const int64_t total = int64_t(n) * k * width;
  if (total == 0) return cudaSuccess;
  launch(repeat_rows_kernel, grid_for(total), kThreads, 0, stream, x, n, k, width, out);
  return cudaGetLastError();
}

cudaError_t combine_experts(const float* rows, const float* weights, int n, int k, int64_t width, float* out,
                            cudaStream_t stream, bool accumulate, const float* shared, const float* shared_logit,
                            int64_t logit_stride) {
  const int64_t pairs = int64_t(n) * width / 2;
  if ((shared == nullptr) != (shared_logit == nullptr) || width % 2 != 0) return cudaErrorInvalidValue;
  if (pairs == 0) return cudaSuccess;
  const CombineRows c{.rows = rows, .weights = weights, .k = k, .shared = shared, .shared_logit = shared_logit,
                      .logit_stride = logit_stride};
  launch(combine_kernel, grid_for(pairs), kThreads, 0, stream, c, n, width, out, accumulate);
  return cudaGetLastError();
}

cudaError_t split_gated_heads(const float* qg, int64_t rows, int head_dim, float* q, float* gate, cudaStream_t stream) {
  if (rows * head_dim == 0) return cudaSuccess;
  launch(split_gated_heads_kernel, grid_for(rows * head_dim), kThreads, 0, stream, qg, rows, head_dim, q, gate);
  return cudaGetLastError();
}

cudaError_t split_columns(const float* in, int n, int64_t a, int64_t b, int64_t c, float* out, cudaStream_t stream) {
  const int64_t total = n * (a + b + c);
  if (total == 0) return cudaSuccess;
  return launch(split_columns_kernel, grid_for(total), kThreads, 0, stream, in, n, a, b, c, out);
}

cudaError_t sigmoid_mul(float* x, const float* gate, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  launch(sigmoid_mul_kernel, grid_for(n), kThreads, 0, stream, x, gate, n);
  return cudaGetLastError();
}

cudaError_t swiglu(const float* g, const float* u, int64_t n, float* h, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  launch(swiglu_kernel, grid_for(n), kThreads, 0, stream, g, u, n, h);
  return cudaGetLastError();
}

cudaError_t swiglu_pairs(const float* y, int64_t rows, int64_t width, float* h, cudaStream_t stream) {
  if (rows * width == 0) return cudaSuccess;
  launch(swiglu_pairs_kernel, grid_for(rows * width), kThreads, 0, stream, y, rows, width, h);
  return cudaGetLastError();
}

cudaError_t add(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  launch(add_kernel, grid_for(n), kThreads, 0, stream, y, x, n);
  return cudaGetLastError();
}

}  // namespace moe::cuda
