#pragma once
// How a weight matrix's rows lie in VRAM. GGUF's Q8_0 block (an f16 scale, then 32 int8
// values: 34 bytes) leaves the values 2-byte aligned, so the GPU reads them 2 bytes at a time:
// eight load instructions for 16 values in a decode product, two shared-memory loads per mma
// operand in the GEMM. Repacked at upload, each row holds its int8 values (16-byte aligned,
// one 16-byte load for 16 values), then its f16 scales: the same bytes, other places.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace moe::cuda {

enum class GpuLayout {
  Gguf,       // the file's blocks as they are
  Q8_0Split,  // Q8_0 rows: cols int8 values, then cols / 32 f16 scales, rows q8_0_split_stride(cols) apart
};

// cols + cols / 16 bytes, rounded up to a multiple of 16 (the same size as GGUF's rows where
// cols is a multiple of 256).
inline size_t q8_0_split_stride(int64_t cols) { return (size_t(cols) + size_t(cols) / 16 + 15) / 16 * 16; }

// Rows of Q8_0 blocks (src, src_stride bytes apart) into the split layout (dst, dst_stride
// apart), on the GPU. cols a multiple of 32; the buffers must not overlap.
cudaError_t relayout_q8_0_split(const void* src, size_t src_stride, int64_t rows, int64_t cols, void* dst,
                                size_t dst_stride, cudaStream_t stream);

// One expert matrix in RAM (src: device-addressable host memory, the registered mapping; the
// file's rows) and its place in a VRAM slot (Q8_0 split rows, or the file's rows as they are).
struct ExpertRows {
  const void* src = nullptr;
  size_t src_expert_stride = 0, src_row_stride = 0;
  void* dst = nullptr;
  size_t dst_expert_stride = 0, dst_row_stride = 0;
  int64_t rows = 0, cols = 0;
  GpuLayout dst_layout = GpuLayout::Gguf;
};
constexpr int kMaxExpertMatrices = 3;  // gate, up, down

// Whether fill_expert_slots() takes these rows: strides and addresses multiples of 4 bytes (of
// 16 for a split destination), a Gguf destination with the source's row stride, split rows of
// whole Q8_0 blocks that fit the staging shared memory.
bool expert_rows_fit(const ExpertRows& m);

// The expert cache's copies (handoff.h's ExpertSlots): for each i < count with ids[i] >= 0,
// expert ids[i]'s rows of every matrix into VRAM slot slots[i], read over PCIe (16 bytes a
// load where rows allow, else 4). cudaErrorInvalidValue for rows expert_rows_fit() refuses.
cudaError_t fill_expert_slots(const ExpertRows (&matrices)[kMaxExpertMatrices], int n_matrices, const int32_t* ids,
                              const int32_t* slots, int count, cudaStream_t stream);

}  // namespace moe::cuda
