// Decode-time products y = W x on the GPU, one warp per weight row.
//
// A row is cut into tasks of 16 values (8 for float weights); lane l of the warp takes tasks
// l, l + 32, ..., so the lanes read consecutive weights together. Quantized weights meet
// activations quantized the CPU's way (activations.h) in integer dot products (__dp4a, four
// int8 products a step), and every block scale is applied as on the CPU: the integer sums are
// the CPU kernels' sums, only the float additions come in another order. The lanes' partial
// sums are added with shuffles and lane 0 writes the row's results.
//
// Weight formats as in core/quant_blocks.h (byte offsets repeated here: nvcc compiles this
// file without the CPU headers' inline helpers).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>
#include <utility>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/block_fields.cuh"
#include "ops/cuda/float_dot.cuh"
#include "ops/cuda/last_block.cuh"
#include "ops/cuda/matvec.h"
#include "ops/cuda/quantize_block.cuh"
#include "ops/cuda/routing.cuh"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

// 16 bytes as four ints, from a 2-byte or a 16-byte aligned address.
__device__ __forceinline__ void load16_a2(const uint8_t* p, int (&v)[4]) {
#pragma unroll
  for (int k = 0; k < 4; ++k) v[k] = word_at_a2(p + 4 * k);
}
__device__ __forceinline__ void load16_a16(const uint8_t* p, int (&v)[4]) {
  const int4 u = *reinterpret_cast<const int4*>(p);
  v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
}

// Sixteen int8 products (weights w, activations x), and the sum of the sixteen activations.
__device__ __forceinline__ int dot16(const int (&w)[4], int4 x) {
  return __dp4a(w[0], x.x, __dp4a(w[1], x.y, __dp4a(w[2], x.z, __dp4a(w[3], x.w, 0))));
}
__device__ __forceinline__ int sum16(int4 x) {
  constexpr int kOnes = 0x01010101;
  return __dp4a(kOnes, x.x, __dp4a(kOnes, x.y, __dp4a(kOnes, x.z, __dp4a(kOnes, x.w, 0))));
}

// Token t's 16 activations starting at value i.
__device__ __forceinline__ int4 x16(const DeviceActivations& x, int t, int64_t i) {
  return *reinterpret_cast<const int4*>(x.qs + t * x.cols + i);
}

// Q8_0 in the split layout (layout.h): a row's values, then its scales after cols bytes.
struct Q8_0Split {
  static constexpr int kTask = 16;
  template <int NT>
  __device__ static void dot(const uint8_t* row, int c, const DeviceActivations& x, float (&acc)[NT]) {
    const int b = c / 2;
    const float d = f16_at(row + x.cols + 2 * b);
    int w[4];
    load16_a16(row + 16 * c, w);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      acc[t] += float(dot16(w, x16(x, t, 16 * c))) * (d * x.scales[t * (x.cols / 32) + b]);
    }
  }
};

// Each format adds the products of its task c (values kTask * c ...) to acc[t] for NT tokens.
struct Q8_0 {
  static constexpr int kTask = 16;
  template <int NT>
  __device__ static void dot(const uint8_t* row, int c, const DeviceActivations& x, float (&acc)[NT]) {
    const int b = c / 2;
    const uint8_t* blk = row + 34 * b;
    const float d = f16_at(blk);
    int w[4];
    load16_a2(blk + 2 + 16 * (c % 2), w);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      acc[t] += float(dot16(w, x16(x, t, 16 * c))) * (d * x.scales[t * (x.cols / 32) + b]);
    }
  }
};

struct Q4_0 {  // values 0..15: low nibbles of qs[0..15], 16..31: high nibbles, minus 8
  static constexpr int kTask = 16;
  template <int NT>
  __device__ static void dot(const uint8_t* row, int c, const DeviceActivations& x, float (&acc)[NT]) {
    const int b = c / 2;
    const uint8_t* blk = row + 18 * b;
    const float d = f16_at(blk);
    int w[4];
    load16_a2(blk + 2, w);
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = (w[k] >> (4 * (c % 2))) & 0x0F0F0F0F;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int4 xv = x16(x, t, 16 * c);
      acc[t] += float(dot16(w, xv) - 8 * sum16(xv)) * (d * x.scales[t * (x.cols / 32) + b]);
    }
  }
};

// Q4_K (144 bytes: d, dmin, scales[12], qs[128]) and Q5_K (176: d, dmin, scales[12], qh[32],
// qs[128]). Value o of a block: 32-byte group o / 64, low nibbles for its first 32 values; the
// fifth bit of Q5_K is bit o / 32 of qh[o % 32].
template <bool kQ5>
struct Q45_K {
  static constexpr int kTask = 16;
  static constexpr int kBlockBytes = kQ5 ? 176 : 144, kQs = kQ5 ? 48 : 16;
  template <int NT>
  __device__ static void dot(const uint8_t* row, int c, const DeviceActivations& x, float (&acc)[NT]) {
    const int b = c / 16, o = 16 * (c % 16), s = o / 32, l = o % 32;
    const uint8_t* blk = row + kBlockBytes * b;
    int sc, m;
    k_scale(blk + 4, s, sc, m);
    int w[4];
    load16_a16(blk + kQs + 32 * (o / 64) + l, w);
    const int shift = (o % 64) < 32 ? 0 : 4;
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = (w[k] >> shift) & 0x0F0F0F0F;
    if constexpr (kQ5) {
      int h[4];
      load16_a16(blk + 16 + l, h);
#pragma unroll
      for (int k = 0; k < 4; ++k) w[k] |= ((h[k] >> s) & 0x01010101) << 4;
    }
    const float d = f16_at(blk), dmin = f16_at(blk + 2);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float dx = x.scales[t * (x.cols / 256) + b];
      const int isum = sc * dot16(w, x16(x, t, 16 * c)), msum = m * x.sums[t * (x.cols / 16) + c];
      acc[t] += float(isum) * (d * dx);
      acc[t] -= float(msum) * (dmin * dx);
    }
  }
};

// Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d): value o in half h = o / 128, quarter
// q of that half: low bits nibble q / 2 of ql[64h + 32 (q % 2) + l], high bits 2q, 2q + 1 of
// qh[32h + l], l = o % 32; one int8 scale per 16 values; stored +32.
struct Q6_K {
  static constexpr int kTask = 16;
  template <int NT>
  __device__ static void dot(const uint8_t* row, int c, const DeviceActivations& x, float (&acc)[NT]) {
    const int b = c / 16, o = 16 * (c % 16), h = o / 128, q = (o % 128) / 32, l = o % 32;
    const uint8_t* blk = row + 210 * b;
    int lo[4], hi[4], w[4];
    load16_a2(blk + 64 * h + 32 * (q % 2) + l, lo);
    load16_a2(blk + 128 + 32 * h + l, hi);
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = ((lo[k] >> (4 * (q / 2))) & 0x0F0F0F0F) | (((hi[k] >> (2 * q)) & 0x03030303) << 4);
    const int sc = int(int8_t(blk[192 + 8 * h + l / 16 + 2 * q]));
    const float d = f16_at(blk + 208);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int isum = sc * (dot16(w, x16(x, t, 16 * c)) - 32 * x.sums[t * (x.cols / 16) + c]);
      acc[t] += float(isum) * (d * x.scales[t * (x.cols / 256) + b]);
    }
  }
};

// Float weights against f32 activations, 8 values a task.
template <typename Decode>
struct FloatWeights {
  static constexpr int kTask = 8;
  template <int NT>
  __device__ static void dot(const uint8_t* row, int c, const DeviceActivations& x, float (&acc)[NT]) {
    float v[8];
    Decode::decode8(row, c, v);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float4* xp = reinterpret_cast<const float4*>(x.f32 + t * x.cols + 8 * c);
      acc[t] += dot8(v, __ldg(xp), __ldg(xp + 1));
    }
  }
};

struct F32 {  // two 16-byte loads: rows of f32 weights start 32-byte aligned (cols % 8 == 0)
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const auto* p = reinterpret_cast<const float4*>(row) + 2 * c;
    const float4 a = __ldg(p), b = __ldg(p + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
};

struct F16 {
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const auto* p = reinterpret_cast<const __half*>(row) + 8 * c;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __half2float(p[i]);
  }
};

struct BF16 {
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const auto* p = reinterpret_cast<const __nv_bfloat16*>(row) + 8 * c;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __bfloat162float(p[i]);
  }
};

// The last thread block of a router's product to finish routes the token(s) over the logits
// the whole grid wrote (kRoute; one launch instead of two). Every thread of the block calls it.
__device__ void route_if_last(const float* logits, int n_tok, int64_t stride, const RouteTarget& r) {
  if (!last_to_arrive(r.counter, gridDim.x)) return;
  for (int t = threadIdx.y; t < n_tok; t += blockDim.y) route_token_any(logits + t * stride, r, t);
}

// kSplit warps per row (1, 2 or 4), each over every kSplit-th stretch of 32 tasks: a matrix of
// few rows (a router: 513; an output projection: 2048) has too few warps to keep the memory
// system busy at one a row. The warps' partial sums are added in warp order.
template <typename Format, int NT, int kSplit, bool kRoute = false>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    matvec_kernel(const uint8_t* __restrict__ w, size_t row_stride, int64_t rows, const DeviceActivations x,
                  float* y, bool accumulate, RouteTarget route) {
  wait_for_previous_kernels();
  allow_next_kernel();
  static_assert(kWarpsPerBlock % kSplit == 0);
  __shared__ float partial[kWarpsPerBlock][NT];
  const int part = threadIdx.y % kSplit;
  const int64_t row = int64_t(blockIdx.x) * (kWarpsPerBlock / kSplit) + threadIdx.y / kSplit;
  const bool live = row < rows;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  if (live) {
    const uint8_t* wr = w + row * row_stride;
    const int tasks = int(x.cols / Format::kTask);
#pragma unroll 4
    for (int c = threadIdx.x + 32 * part; c < tasks; c += 32 * kSplit) Format::template dot<NT>(wr, c, x, acc);
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = warp_sum(acc[t]);
  if constexpr (kSplit > 1) {
    if (threadIdx.x == 0) {
#pragma unroll
      for (int t = 0; t < NT; ++t) partial[threadIdx.y][t] = acc[t];
    }
    __syncthreads();
    if (part == 0 && live) {
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        for (int p = 1; p < kSplit; ++p) acc[t] += partial[threadIdx.y + p][t];
      }
    }
  }
  if (live && part == 0 && threadIdx.x == 0) {
#pragma unroll
    for (int t = 0; t < NT; ++t) y[t * rows + row] = accumulate ? y[t * rows + row] + acc[t] : acc[t];
  }
  if constexpr (kRoute) route_if_last(y, NT, rows, route);
}

// One warp's products of kRows weight rows row0, row0 + 1, ... (those below `rows`) of matrix w
// with one token's activations x, lane l over tasks l, l + 32, ... (kUnroll of them unrolled),
// the rows' loads interleaved; lane 0 writes row r's sum to y[r].
template <typename Format, int kRows, int kUnroll>
__device__ inline void warp_rows_product(const uint8_t* w, size_t row_stride, int64_t row0, int64_t rows,
                                         const DeviceActivations& x, float* y) {
  float acc[kRows][1] = {};
  const int tasks = int(x.cols / Format::kTask);
#pragma unroll kUnroll
  for (int c = threadIdx.x; c < tasks; c += 32) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (row0 + r < rows) Format::template dot<1>(w + (row0 + r) * row_stride, c, x, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warp_sum(acc[r][0]);
    if (threadIdx.x == 0 && row0 + r < rows) y[row0 + r] = sum;
  }
}

constexpr int32_t kZeroRow = -1;  // an expert id that makes the products write a zero row (others < 0: skip)

// Expert products: block row y of the grid is output row j, expert experts[j]'s matrix (at
// w + experts[j] * expert_stride) times activation row j / x_row_div. Each warp takes kRows
// weight rows, their loads interleaved (kRows x 4 loads of 16 bytes in flight a lane), and the
// grid should fit the GPU in one wave: a second wave of a few blocks runs with the memory
// system mostly idle. kMinBlocks (0: no bound) holds the registers to what that wave needs.
template <typename Format, int kRows, int kMinBlocks>
__global__ void __launch_bounds__(32 * kWarpsPerBlock, kMinBlocks)
    matvec_experts_kernel(const uint8_t* __restrict__ w, size_t expert_stride, size_t row_stride, int64_t rows,
                          const DeviceActivations x, int x_row_div, const int32_t* __restrict__ experts,
                          float* __restrict__ y, int64_t y_stride) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t row0 = (int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y) * kRows;
  if (row0 >= rows) return;
  const int j = blockIdx.y;
  const int32_t e = experts[j];
  if (e < 0) {  // computed elsewhere: the hybrid's CPU (-1, a zero row here) or another launch (-2)
    if (threadIdx.x < kRows && row0 + threadIdx.x < rows && e == kZeroRow) {
      y[int64_t(j) * y_stride + row0 + threadIdx.x] = 0.0f;
    }
    return;
  }
  warp_rows_product<Format, kRows, 4>(w + size_t(e) * expert_stride, row_stride, row0, rows,
                                       x.rows(j / x_row_div, 1), y + int64_t(j) * y_stride);
}

template <typename Format>
cudaError_t launch_experts_format(const void* w, size_t expert_stride, size_t stride, int64_t rows,
                                  const DeviceActivations& x, int x_row_div, const int32_t* experts, float* y,
                                  int64_t y_stride, cudaStream_t stream) {
  auto run = [&](auto kernel, int rows_a_warp) {
    const int64_t block_rows = kWarpsPerBlock * rows_a_warp;
    const dim3 block(32, kWarpsPerBlock);
    const dim3 grid(unsigned((rows + block_rows - 1) / block_rows), unsigned(x.n_tok * x_row_div));
    launch(kernel, grid, block, 0, stream, static_cast<const uint8_t*>(w), expert_stride, stride, rows, x, x_row_div,
           experts, y, y_stride);
    return cudaGetLastError();
  };
  // Q8_0 (split rows), three rows a warp at 64 registers, 8 blocks an SM: a decode step's
  // gate/up products (Qwen3-Next: 11 experts x 1024 rows, 946 blocks; Qwen3-30B: 8 x 1536, 1024)
  // fit the 132 SMs of an H100 SXM or an H200 in one wave. Two rows a warp took 44 registers, 10
  // blocks an SM: 1320 of the 1408 blocks, then a second wave; 11.1 -> 9.0 us a launch, decode
  // +3.7% (80B) and +4.6% (30B) (performance.md 2026-11-28 (g)). Other formats keep two rows (not
  // measured).
  if constexpr (std::is_same_v<Format, Q8_0Split>) {
    return run(matvec_experts_kernel<Format, 3, 8>, 3);
  } else {
    return run(matvec_experts_kernel<Format, 2, 0>, 2);
  }
}

// The experts' down products with the SwiGLU of their [gate | up] rows and its quantization in
// the same launch (decode; one kernel less a layer). Each block first computes its expert row's
// activations into shared memory (the arithmetic and the bytes of swiglu_quantize_kernel), then
// kSwigluWarps warps take kRowsPerWarp weight rows each: a down matrix's rows are short (512 or
// 768 values, one or two 16-byte loads a lane), and several rows a warp keep more loads in
// flight. Each row's sum is the plain experts kernel's, in the same order: the same bits.
constexpr int kSwigluWarps = 8, kRowsPerWarp = 4, kSwigluRows = kSwigluWarps * kRowsPerWarp;

template <typename Format>
__global__ void __launch_bounds__(32 * kSwigluWarps)
    matvec_experts_swiglu_kernel(const uint8_t* __restrict__ w, size_t expert_stride, size_t row_stride,
                                 int64_t rows, const float* __restrict__ gu, int64_t cols, bool k_quant,
                                 const int32_t* __restrict__ experts, float* __restrict__ y) {
  wait_for_previous_kernels();
  allow_next_kernel();
  extern __shared__ __align__(16) float h[];  // [cols], then the quantized row
  auto* qs = reinterpret_cast<int8_t*>(h + cols);
  auto* scales = reinterpret_cast<float*>(qs + cols);
  auto* sums = reinterpret_cast<int*>(scales + cols / 32);
  const int j = blockIdx.y;
  const int32_t e = experts[j];
  const int64_t row0 = (int64_t(blockIdx.x) * kSwigluWarps + threadIdx.y) * kRowsPerWarp;
  if (e < 0) {  // computed elsewhere: the hybrid's CPU (-1, a zero row here) or another launch (-2)
    for (int r = threadIdx.x; r < kRowsPerWarp && e == kZeroRow; r += 32) {
      if (row0 + r < rows) y[int64_t(j) * rows + row0 + r] = 0.0f;
    }
    return;
  }
  const float* g = gu + int64_t(j) * 2 * cols;
  for (int64_t i = threadIdx.y * 32 + threadIdx.x; i < cols; i += 32 * kSwigluWarps) h[i] = silu(g[i]) * g[cols + i];
  __syncthreads();
  quantize_row(h, 0, cols, k_quant, qs, scales, sums);
  __syncthreads();
  DeviceActivations x{k_quant ? GgmlType::Q8_K : GgmlType::Q8_0, cols, 1};
  x.qs = qs, x.scales = scales, x.sums = k_quant ? sums : nullptr;

  warp_rows_product<Format, kRowsPerWarp, 1>(w + size_t(e) * expert_stride, row_stride, row0, rows, x,
                                              y + int64_t(j) * rows);
}

size_t swiglu_shared_bytes(int64_t cols) { return size_t(cols) * (4 + 1) + size_t(cols / 32) * 4 + size_t(cols / 16) * 4; }

template <typename Format>
cudaError_t launch_experts_swiglu_format(const void* w, size_t expert_stride, size_t stride, int64_t rows,
                                         const float* gu, int n, int64_t cols, bool k_quant, const int32_t* experts,
                                         float* y, cudaStream_t stream) {
  const dim3 block(32, kSwigluWarps), grid(unsigned((rows + kSwigluRows - 1) / kSwigluRows), unsigned(n));
  launch(matvec_experts_swiglu_kernel<Format>, grid, block, swiglu_shared_bytes(cols), stream,
         static_cast<const uint8_t*>(w), expert_stride, stride, rows, gu, cols, k_quant, experts, y);
  return cudaGetLastError();
}

// Warps per row for a one-token product: enough warps in flight for the memory system.
int split_for(int64_t rows) { return rows <= 1024 ? 4 : rows <= 4096 ? 2 : 1; }

template <typename Format>
cudaError_t launch_format(const void* w, size_t stride, int64_t rows, const DeviceActivations& x, float* y,
                          bool accumulate, cudaStream_t stream, const RouteTarget* route) {
  const int n_tok = x.n_tok;
  const dim3 block(32, kWarpsPerBlock);
  const auto* wb = static_cast<const uint8_t*>(w);
  auto grid = [&](int split) {
    const int rows_per_block = kWarpsPerBlock / split;
    return dim3(unsigned((rows + rows_per_block - 1) / rows_per_block));
  };
  const RouteTarget no_route;
  auto run = [&](auto kernel, int split) {
    return launch(kernel, grid(split), block, 0, stream, wb, stride, rows, x, y, accumulate, route ? *route : no_route);
  };
  if (route) {  // one token (checked by the caller)
    switch (split_for(rows)) {
      case 4: return run(matvec_kernel<Format, 1, 4, true>, 4);
      case 2: return run(matvec_kernel<Format, 1, 2, true>, 2);
      default: return run(matvec_kernel<Format, 1, 1, true>, 1);
    }
  }
  if (n_tok == 1) {  // decode: split the rows of small matrices over several warps
    switch (split_for(rows)) {
      case 4: return run(matvec_kernel<Format, 1, 4>, 4);
      case 2: return run(matvec_kernel<Format, 1, 2>, 2);
      default: return run(matvec_kernel<Format, 1, 1>, 1);
    }
  }
  // One instantiation per token count: the accumulators stay in registers.
  const bool launched = [&]<int... N>(std::integer_sequence<int, N...>) {
    return ((n_tok == N + 1 ? (run(matvec_kernel<Format, N + 1, 1>, 1), true) : false) || ...);
  }(std::make_integer_sequence<int, kMaxMatvecTokens>{});
  if (!launched) return cudaErrorInvalidValue;
  return cudaGetLastError();
}

// Calls f(Format{}) with the kernel format of weights of `type` laid out as `layout`;
// cudaErrorInvalidValue where there is none.
template <typename F>
cudaError_t with_format(GgmlType type, GpuLayout layout, F&& f) {
  if (layout == GpuLayout::Q8_0Split) return type == GgmlType::Q8_0 ? f(Q8_0Split{}) : cudaErrorInvalidValue;
  switch (type) {
    case GgmlType::Q8_0: return f(Q8_0{});
    case GgmlType::Q4_0: return f(Q4_0{});
    case GgmlType::Q4_K: return f(Q45_K<false>{});
    case GgmlType::Q5_K: return f(Q45_K<true>{});
    case GgmlType::Q6_K: return f(Q6_K{});
    case GgmlType::F32: return f(FloatWeights<F32>{});
    case GgmlType::F16: return f(FloatWeights<F16>{});
    case GgmlType::BF16: return f(FloatWeights<BF16>{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t launch_matvec(GgmlType type, GpuLayout layout, const void* w, size_t stride, int64_t rows,
                          const DeviceActivations& x, float* y, bool accumulate, cudaStream_t stream,
                          const RouteTarget* route) {
  return with_format(type, layout, [&]<typename Format>(Format) {
    return launch_format<Format>(w, stride, rows, x, y, accumulate, stream, route);
  });
}

cudaError_t launch_matvec_experts(GgmlType type, GpuLayout layout, const void* w, size_t expert_stride,
                                  size_t stride, int64_t rows, const DeviceActivations& x, int x_row_div,
                                  const int32_t* experts, float* y, int64_t y_stride, cudaStream_t stream) {
  return with_format(type, layout, [&]<typename Format>(Format) {
    return launch_experts_format<Format>(w, expert_stride, stride, rows, x, x_row_div, experts, y, y_stride, stream);
  });
}

cudaError_t launch_matvec_experts_swiglu(GgmlType type, GpuLayout layout, const void* w, size_t expert_stride,
                                         size_t stride, int64_t rows, const float* gu, int n, int64_t cols,
                                         const int32_t* experts, float* y, cudaStream_t stream) {
  return with_format(type, layout, [&]<typename Format>(Format) {
    if constexpr (Format::kTask == 8) {  // float weights read f32 activations: nothing to quantize
      return cudaErrorInvalidValue;
    } else {
      const bool k_quant = block_size(type) == 256;
      return launch_experts_swiglu_format<Format>(w, expert_stride, stride, rows, gu, n, cols, k_quant, experts, y,
                                                  stream);
    }
  });
}

}  // namespace moe::cuda
