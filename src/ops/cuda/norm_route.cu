// The MoE block's norm, the router's product and the routing in one launch (norm_route.h).
#include <cstdint>

#include "ops/cuda/float_dot.cuh"
#include "ops/cuda/last_block.cuh"
#include "ops/cuda/launch.cuh"
#include "ops/cuda/norm_pairs.cuh"
#include "ops/cuda/norm_route.h"
#include "ops/cuda/quantize_block.cuh"
#include "ops/cuda/routing.cuh"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kWarps = 16, kThreads = 32 * kWarps;
// The one-token product's layout for matrices of at most 1024 rows (matvec.cu): four warps a
// row, each over every fourth stretch of 32 tasks of 8 values, their sums added in warp order.
constexpr int kSplit = 4, kRowsPerBlock = kWarps / kSplit;
constexpr int64_t kMaxRows = 1024, kMaxWidth = 8192;
// The one-row norm kernel (activations.cu) sums a decode row's squares over 32 warps of 32
// threads: this kernel adds them in that order, for its bits.
constexpr int kNormWarps = 32, kNormThreads = 32 * kNormWarps;
constexpr int kEarlyTasks = 2;  // router weights a lane loads before the norm: rows of 2048 values

__global__ void __launch_bounds__(kThreads) norm_route_kernel(NormRoute a) {
  __shared__ __align__(16) float u[kMaxWidth];
  __shared__ double norm_part[kNormWarps];
  __shared__ float row_part[kWarps];
  const int lane = int(threadIdx.x), warp = int(threadIdx.y), tid = warp * 32 + lane;
  const int64_t pairs = a.width / 2;
  const HeldWeights held(a.norm, a.width, tid, kThreads);  // constants: loaded before the wait
  // The router rows' first weights (every task of a 2048-wide row), constants too: requested
  // before the wait, so that their memory latency passes under the previous kernel and the norm.
  const int part = warp % kSplit;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + warp / kSplit;
  const auto* wr = reinterpret_cast<const float4*>(reinterpret_cast<const uint8_t*>(a.router) +
                                                   min(row, a.rows - 1) * a.row_stride);
  const int tasks = int(a.width / 8);
  float4 early[kEarlyTasks][2];
#pragma unroll
  for (int j = 0; j < kEarlyTasks; ++j) {
    const int c = lane + 32 * part + j * 32 * kSplit;
    if (c < tasks) early[j][0] = __ldg(wr + 2 * c), early[j][1] = __ldg(wr + 2 * c + 1);
  }
  wait_for_previous_kernels();
  allow_next_kernel();

  // The sum of squares: the norm kernel's warp v (its threads 32 v + lane, each over pairs
  // 32 v + lane, + 1024, ...) is this block's warp v % kWarps.
  const auto* x2 = reinterpret_cast<const float2*>(a.x);
  auto* u2 = reinterpret_cast<float2*>(u);
  for (int v = warp; v < kNormWarps; v += kWarps) {
    double sum = 0;
    for (int64_t p = 32 * v + lane; p < pairs; p += kNormThreads) {
      const float2 xv = x2[p];
      u2[p] = xv;
      sum += double(xv.x) * xv.x;
      sum += double(xv.y) * xv.y;
    }
    sum = warp_sum(sum);
    if (lane == 0) norm_part[v] = sum;
  }
  __syncthreads();
  double total = 0;
  for (int i = 0; i < kNormWarps; ++i) total += norm_part[i];
  const float scale = float(1.0 / sqrt(total / double(a.width) + a.eps));
  for_pairs(a.width, tid, kThreads, held, a.norm, [&](int64_t p, float2 wp) {
    const float2 v = u2[p];
    u2[p] = {v.x * scale * wp.x, v.y * scale * wp.y};
  });
  __syncthreads();

  // This block's share of the outputs the experts read: the normed row and its quantized blocks.
  for (int64_t p = int64_t(blockIdx.x) * kThreads + tid; p < pairs; p += int64_t(gridDim.x) * kThreads) {
    reinterpret_cast<float2*>(a.u)[p] = u2[p];
  }
  quantize_row(u, 0, a.width, a.k_quant, a.qs, a.scales, a.sums, int64_t(blockIdx.x) * kWarps + warp,
               int64_t(gridDim.x) * kWarps);

  // The router's rows, as matvec_kernel<FloatWeights<F32>, 1, 4> computes them (the same tasks in
  // the same order: the early ones first).
  float acc = 0.0f;
  if (row < a.rows) {
    const auto* u4 = reinterpret_cast<const float4*>(u);
    auto add = [&](int c, float4 p, float4 q) {
      const float v[8] = {p.x, p.y, p.z, p.w, q.x, q.y, q.z, q.w};
      acc += dot8(v, u4[2 * c], u4[2 * c + 1]);
    };
#pragma unroll
    for (int j = 0; j < kEarlyTasks; ++j) {
      const int c = lane + 32 * part + j * 32 * kSplit;
      if (c < tasks) add(c, early[j][0], early[j][1]);
    }
#pragma unroll 4
    for (int c = lane + 32 * part + kEarlyTasks * 32 * kSplit; c < tasks; c += 32 * kSplit) {
      add(c, __ldg(wr + 2 * c), __ldg(wr + 2 * c + 1));
    }
  }
  acc = warp_sum(acc);
  if (lane == 0) row_part[warp] = acc;
  __syncthreads();
  if (part == 0 && lane == 0 && row < a.rows) {
    for (int p = 1; p < kSplit; ++p) acc += row_part[warp + p];
    a.logits[row] = acc;
  }
  if (last_to_arrive(a.route.counter, gridDim.x) && warp == 0) route_token_any(a.logits, a.route, 0);
}

bool aligned(const void* p, size_t to) { return reinterpret_cast<uintptr_t>(p) % to == 0; }

}  // namespace

bool fits_norm_route(int64_t rows, int64_t width, const RouteTarget& r) {
  const int with_gate = r.shared_expert >= 0 ? 1 : 0;
  return rows >= 1 && rows <= kMaxRows && width >= 8 && width <= kMaxWidth && width % 8 == 0 && r.n_expert >= 1 &&
         r.n_expert <= 512 && r.k >= 1 && r.k <= r.n_expert && r.k + with_gate <= 32 && rows >= r.n_expert + with_gate;
}

cudaError_t norm_route(const NormRoute& a, cudaStream_t stream) {
  const int qblock = a.k_quant ? 256 : 32;
  if (!fits_norm_route(a.rows, a.width, a.route) || !a.x || !a.norm || !a.u || !a.router || !a.logits ||
      !a.route.counter || !a.route.experts || !a.route.weights || !aligned(a.x, 8) || !aligned(a.norm, 8) ||
      !aligned(a.u, 8) || !aligned(a.router, 16) || a.row_stride % 16 != 0 ||
      a.row_stride < size_t(a.width) * sizeof(float) || a.width % qblock != 0 || !a.qs || !a.scales ||
      (a.k_quant && !a.sums)) {
    return cudaErrorInvalidValue;
  }
  const unsigned blocks = unsigned((a.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  launch(norm_route_kernel, blocks, dim3(32, kWarps), 0, stream, a);
  return cudaGetLastError();
}

}  // namespace moe::cuda
