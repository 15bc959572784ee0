// Weight relayout at upload (one thread per Q8_0 block), and the expert cache's copies of
// experts from RAM into VRAM slots (16-byte reads over PCIe where the rows allow, else 4-byte).
#include "ops/cuda/launch.cuh"
#include "ops/cuda/layout.h"

#include <algorithm>
#include <cstdint>

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

constexpr int kFillThreads = 256;
constexpr size_t kFillChunk = 16384;  // bytes of whole rows a block stages (more if one row is longer)

struct FillArgs {
  ExpertRows m[kMaxExpertMatrices];
};

// A block's bytes [0, bytes) from src to dst, 16 bytes a thread and load where both ends and
// the length allow it (every row format's rows at Qwen3's widths), else 4.
__device__ void copy_bytes(const uint8_t* src, uint8_t* dst, int64_t bytes) {
  if (((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) | uintptr_t(bytes)) & 15) == 0) {
    const auto* in = reinterpret_cast<const uint4*>(src);
    auto* out = reinterpret_cast<uint4*>(dst);
    for (int64_t i = threadIdx.x; i < bytes / 16; i += kFillThreads) out[i] = in[i];
  } else {
    const auto* in = reinterpret_cast<const uint32_t*>(src);
    auto* out = reinterpret_cast<uint32_t*>(dst);
    for (int64_t i = threadIdx.x; i < bytes / 4; i += kFillThreads) out[i] = in[i];
  }
}

// Block (x, y, z): rows chunk x of matrix z of entry y.
__global__ void __launch_bounds__(kFillThreads)
    fill_kernel(FillArgs args, const int32_t* __restrict__ ids, const int32_t* __restrict__ slots) {
  extern __shared__ uint4 staged[];
  wait_for_previous_kernels();
  allow_next_kernel();
  const int32_t expert = ids[blockIdx.y];
  if (expert < 0) return;
  const ExpertRows& m = args.m[blockIdx.z];
  const int64_t per_block = max(int64_t(1), int64_t(kFillChunk / m.src_row_stride));
  const int64_t r0 = int64_t(blockIdx.x) * per_block, rows = min(per_block, m.rows - r0);
  if (rows <= 0) return;
  const auto* src =
      static_cast<const uint8_t*>(m.src) + size_t(expert) * m.src_expert_stride + size_t(r0) * m.src_row_stride;
  auto* dst = static_cast<uint8_t*>(m.dst) + size_t(slots[blockIdx.y]) * m.dst_expert_stride;
  const int64_t chunk = rows * int64_t(m.src_row_stride);
  if (m.dst_layout == GpuLayout::Gguf) {  // the same rows, the same stride: one contiguous run
    copy_bytes(src, dst + size_t(r0) * m.dst_row_stride, chunk);
    return;
  }
  copy_bytes(src, reinterpret_cast<uint8_t*>(staged), chunk);
  __syncthreads();
  // Q8_0 into the split layout: a thread a (row, block, half of its 32 values).
  const auto* bytes = reinterpret_cast<const uint8_t*>(staged);
  const int64_t blocks = m.cols / 32;
  for (int64_t j = threadIdx.x; j < rows * blocks * 2; j += kFillThreads) {
    const int64_t r = j / (blocks * 2), b = j / 2 % blocks;
    const int half = int(j % 2);
    const auto* in = reinterpret_cast<const uint16_t*>(bytes + r * m.src_row_stride + b * 34);  // 2-byte aligned
    uint8_t* row = dst + size_t(r0 + r) * m.dst_row_stride;
    uint16_t v[8];
#pragma unroll
    for (int q = 0; q < 8; ++q) v[q] = in[1 + half * 8 + q];
    *reinterpret_cast<uint4*>(row + b * 32 + half * 16) = *reinterpret_cast<const uint4*>(v);
    if (half == 0) reinterpret_cast<uint16_t*>(row + m.cols)[b] = in[0];
  }
}

}  // namespace

bool expert_rows_fit(const ExpertRows& m) {
  const auto aligned = [](size_t v, size_t to) { return v % to == 0; };
  // Rows copied 4 bytes at a time at least; split rows are written 16 at a time.
  const bool split = m.dst_layout == GpuLayout::Q8_0Split;
  const size_t dst_align = split ? 16 : 4;
  if (!aligned(m.src_row_stride, 4) || !aligned(m.src_expert_stride, 4) ||
      !aligned(reinterpret_cast<uintptr_t>(m.src), 4) || !aligned(m.dst_row_stride, dst_align) ||
      !aligned(m.dst_expert_stride, dst_align) || !aligned(reinterpret_cast<uintptr_t>(m.dst), dst_align) ||
      m.rows < 1) {
    return false;
  }
  if (!split) return m.dst_row_stride == m.src_row_stride;
  const size_t staged = std::max<size_t>(1, kFillChunk / m.src_row_stride) * m.src_row_stride;
  return m.cols % 32 == 0 && m.src_row_stride >= size_t(m.cols / 32 * 34) &&
         m.dst_row_stride >= q8_0_split_stride(m.cols) && staged <= 48 * 1024;  // the default shared memory
}

cudaError_t fill_expert_slots(const ExpertRows (&matrices)[kMaxExpertMatrices], int n_matrices, const int32_t* ids,
                              const int32_t* slots, int count, cudaStream_t stream) {
  if (n_matrices < 1 || n_matrices > kMaxExpertMatrices || count < 0) return cudaErrorInvalidValue;
  if (count == 0) return cudaSuccess;
  FillArgs args{};
  int64_t chunks = 1;
  size_t smem = 0;
  for (int z = 0; z < n_matrices; ++z) {
    const ExpertRows& m = matrices[z];
    if (!expert_rows_fit(m)) return cudaErrorInvalidValue;
    const int64_t per_block = std::max<int64_t>(1, int64_t(kFillChunk / m.src_row_stride));
    chunks = std::max(chunks, (m.rows + per_block - 1) / per_block);
    if (m.dst_layout != GpuLayout::Gguf) smem = std::max(smem, size_t(per_block) * m.src_row_stride);
    args.m[z] = m;
  }
  return launch(fill_kernel, dim3(unsigned(chunks), unsigned(count), unsigned(n_matrices)), kFillThreads, smem, stream,
                args, ids, slots);
}

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
