// Activation quantization, one warp per block: the CPU's arithmetic (ops/cpu/quantize.cpp)
// value for value, so the integer sums of the products are the same on both backends.
#include <cuda_fp16.h>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/activations.h"
#include "ops/cuda/combine.cuh"
#include "ops/cuda/handoff.cuh"
#include "ops/cuda/norm_pairs.cuh"
#include "ops/cuda/quantize_block.cuh"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void quantize_q8_0_kernel(const float* __restrict__ x, int64_t n_blocks, int8_t* __restrict__ qs,
                                     float* __restrict__ scales) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t b = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (b < n_blocks) quantize_block_q8_0(x + b * 32, qs + b * 32, scales + b);
}

__global__ void quantize_q8_k_kernel(const float* __restrict__ x, int64_t n_blocks, int8_t* __restrict__ qs,
                                     float* __restrict__ scales, int* __restrict__ sums) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t b = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (b < n_blocks) quantize_block_q8_k(x + b * 256, qs + b * 256, scales + b, sums + b * 16);
}

// RMSNorm of a row (rms_norm() in ops.h, the same arithmetic) and the quantization of the
// result, one thread block of kNormWarps warps per row (decode has one row: the block is all
// the parallelism there is). The normed row is kept in shared memory for the quantization.
constexpr int kNormWarps = 32;

// Warps a row: all 32 for the one row of a decode step, 4 when there are rows enough to fill
// the GPU (a prefill), where a 1024-thread block a row would mostly wait.
unsigned row_warps(int64_t rows) { return rows >= 32 ? 4 : kNormWarps; }
constexpr int64_t kMaxNormWidth = 8192;  // 32 KiB of shared memory

// The rest of a row's RMSNorm and quantization once the row is in shared memory (`normed`)
// and each thread holds the sum of squares of its pairs (in pair order, value 2p first).
__device__ void finish_norm_quantize(float* normed, double sum, int64_t row, int64_t width, const HeldWeights& held,
                                     const float* w, float eps, float* out, bool k_quant, int8_t* qs, float* scales,
                                     int* sums) {
  __shared__ double partial[kNormWarps];
  const int tid = threadIdx.y * 32 + threadIdx.x, threads = 32 * blockDim.y;
  sum = warp_sum(sum);
  if (threadIdx.x == 0) partial[threadIdx.y] = sum;
  __syncthreads();
  double total = 0;
  for (int i = 0; i < int(blockDim.y); ++i) total += partial[i];
  const float scale = float(1.0 / sqrt(total / double(width) + eps));
  for_pairs(width, tid, threads, held, w, [&](int64_t p, float2 wp) {
    float2& v = reinterpret_cast<float2*>(normed)[p];
    v = {v.x * scale * wp.x, v.y * scale * wp.y};
    reinterpret_cast<float2*>(out + row * width)[p] = v;
  });
  __syncthreads();  // each warp quantizes values other warps normed
  quantize_row(normed, row, width, k_quant, qs, scales, sums);
}

__global__ void __launch_bounds__(32 * kNormWarps)
    norm_quantize_kernel(const float* x, const float* __restrict__ w, float eps, int64_t width, float* out,
                         bool k_quant, int8_t* __restrict__ qs, float* __restrict__ scales, int* __restrict__ sums) {
  __shared__ __align__(16) float normed[kMaxNormWidth];
  const int tid = threadIdx.y * 32 + threadIdx.x, threads = 32 * blockDim.y;
  const HeldWeights held(w, width, tid, threads);
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t row = blockIdx.x;
  const auto* xr = reinterpret_cast<const float2*>(x + row * width);
  double sum = 0;
  for (int64_t p = tid; 2 * p < width; p += threads) {
    const float2 v = xr[p];
    reinterpret_cast<float2*>(normed)[p] = v;
    sum += double(v.x) * v.x;
    sum += double(v.y) * v.y;
  }
  finish_norm_quantize(normed, sum, row, width, held, w, eps, out, k_quant, qs, scales, sums);
}

// The MoE combine (combine_kernel in elementwise.cu, the same arithmetic: the k experts' rows
// weighted and summed in rank order, the gated shared expert, the residual add into x), then
// the next block's RMSNorm and quantization of the new x, one block per token row, the loads
// of a pair's rows and weights all in flight together. With the hybrid's CPU sum (c.cpu.sum),
// x + that sum first (add_cpu_sum()'s add), its read of host memory issued before the rows'.
__global__ void __launch_bounds__(32 * kNormWarps)
    combine_norm_quantize_kernel(CombineRows c, float* x, const float* __restrict__ w, float eps, int64_t width,
                                 float* out, bool k_quant, int8_t* __restrict__ qs, float* __restrict__ scales,
                                 int* __restrict__ sums) {
  __shared__ __align__(16) float normed[kMaxNormWidth];
  const int tid = threadIdx.y * 32 + threadIdx.x, threads = 32 * blockDim.y;
  const HeldWeights held(w, width, tid, threads);
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t row = blockIdx.x;
  const bool cpu = c.cpu.sum != nullptr;
  if (cpu) wait_for_cpu_sum(c.cpu, c.cpu_layer);
  double sum = 0;
  for (int64_t p = tid; 2 * p < width; p += threads) {
    float2 from_cpu = {0.0f, 0.0f};
    if (cpu) {
      const volatile float* h = c.cpu.sum + row * width + 2 * p;
      from_cpu = {h[0], h[1]};
    }
    const float2 s = combine_pair(c, row, p, width);
    float2& xv = reinterpret_cast<float2*>(x + row * width)[p];
    const float2 r = cpu ? float2{xv.x + from_cpu.x, xv.y + from_cpu.y} : xv;
    const float2 v = {r.x + s.x, r.y + s.y};
    xv = v;
    reinterpret_cast<float2*>(normed)[p] = v;
    sum += double(v.x) * v.x;
    sum += double(v.y) * v.y;
  }
  finish_norm_quantize(normed, sum, row, width, held, w, eps, out, k_quant, qs, scales, sums);
}

// SwiGLU of rows holding gate and up side by side (swiglu_pairs() in ops.h, the same
// arithmetic) and the quantization of the result, one thread block per row.
__global__ void __launch_bounds__(32 * kNormWarps)
    swiglu_quantize_kernel(const float* __restrict__ y, int64_t width, bool k_quant, int8_t* __restrict__ qs,
                           float* __restrict__ scales, int* __restrict__ sums) {
  wait_for_previous_kernels();
  allow_next_kernel();
  __shared__ float h[kMaxNormWidth];
  const int64_t row = blockIdx.x;
  const int tid = threadIdx.y * 32 + threadIdx.x;
  const float* yr = y + row * 2 * width;
  for (int64_t i = tid; i < width; i += 32 * blockDim.y) {
    const float g = yr[i];
    h[i] = silu(g) * yr[width + i];
  }
  __syncthreads();
  quantize_row(h, row, width, k_quant, qs, scales, sums);
}

// Qwen3-Next's gated RMSNorm of a row of heads (gated_rms_norm() in delta_net.h, the same
// arithmetic: per head of head_width values, x / rms(x) * w * silu(z)) and the quantization
// of the result, one thread block per row, one warp per head.
__global__ void __launch_bounds__(32 * kNormWarps)
    gated_norm_quantize_kernel(const float* __restrict__ x, const float* __restrict__ z, const float* __restrict__ w,
                               float eps, int64_t width, int head_width, bool k_quant, int8_t* __restrict__ qs,
                               float* __restrict__ scales, int* __restrict__ sums) {
  wait_for_previous_kernels();
  allow_next_kernel();
  __shared__ float normed[kMaxNormWidth];
  const int64_t row = blockIdx.x;
  const int lane = threadIdx.x;
  for (int64_t h = threadIdx.y; h < width / head_width; h += blockDim.y) {
    const float* xh = x + row * width + h * head_width;
    const float* zh = z + row * width + h * head_width;
    double sum = 0;
    for (int i = lane; i < head_width; i += 32) sum += double(xh[i]) * xh[i];
    sum = warp_sum(sum);
    const float scale = float(1.0 / sqrt(sum / double(head_width) + eps));
    for (int i = lane; i < head_width; i += 32) {
      const float g = zh[i];
      normed[h * head_width + i] = xh[i] * scale * w[i] * silu(g);
    }
  }
  __syncthreads();
  quantize_row(normed, row, width, k_quant, qs, scales, sums);
}

}  // namespace

cudaError_t launch_gated_norm_quantize(const float* x, const float* z, const float* w, float eps, int64_t rows,
                                       int64_t width, int head_width, bool k_quant, int8_t* qs, float* scales,
                                       int* sums, cudaStream_t stream) {
  if (width > kMaxNormWidth || head_width <= 0 || width % head_width != 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  launch(gated_norm_quantize_kernel, unsigned(rows), dim3(32, row_warps(rows)), 0, stream, x, z, w, eps, width,
         head_width, k_quant, qs, scales, sums);
  return cudaGetLastError();
}

cudaError_t launch_swiglu_quantize(const float* y, int64_t rows, int64_t width, bool k_quant, int8_t* qs,
                                   float* scales, int* sums, cudaStream_t stream) {
  if (width > kMaxNormWidth) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  launch(swiglu_quantize_kernel, unsigned(rows), dim3(32, row_warps(rows)), 0, stream, y, width, k_quant, qs, scales,
         sums);
  return cudaGetLastError();
}

cudaError_t launch_quantize_q8_0(const float* x, int64_t n, int8_t* qs, float* scales, cudaStream_t stream) {
  const int64_t n_blocks = n / 32;
  const dim3 block(32, kWarpsPerBlock), grid(unsigned((n_blocks + kWarpsPerBlock - 1) / kWarpsPerBlock));
  launch(quantize_q8_0_kernel, grid, block, 0, stream, x, n_blocks, qs, scales);
  return cudaGetLastError();
}

cudaError_t launch_quantize_q8_k(const float* x, int64_t n, int8_t* qs, float* scales, int* sums, cudaStream_t stream) {
  const int64_t n_blocks = n / 256;
  const dim3 block(32, kWarpsPerBlock), grid(unsigned((n_blocks + kWarpsPerBlock - 1) / kWarpsPerBlock));
  launch(quantize_q8_k_kernel, grid, block, 0, stream, x, n_blocks, qs, scales, sums);
  return cudaGetLastError();
}

cudaError_t launch_combine_norm_quantize(const CombineRows& c, float* x, const float* w, float eps, int64_t rows,
                                         int64_t width, float* out, bool k_quant, int8_t* qs, float* scales,
                                         int* sums, cudaStream_t stream) {
  if (width > kMaxNormWidth || width % 32 != 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  launch(combine_norm_quantize_kernel, unsigned(rows), dim3(32, row_warps(rows)), 0, stream, c, x, w, eps, width, out,
         k_quant, qs, scales, sums);
  return cudaGetLastError();
}

cudaError_t launch_norm_quantize(const float* x, const float* w, float eps, int64_t rows, int64_t width, float* out,
                                 bool k_quant, int8_t* qs, float* scales, int* sums, cudaStream_t stream) {
  if (width > kMaxNormWidth || width % 32 != 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  launch(norm_quantize_kernel, unsigned(rows), dim3(32, row_warps(rows)), 0, stream, x, w, eps, width, out, k_quant, qs,
         scales, sums);
  return cudaGetLastError();
}

}  // namespace moe::cuda
