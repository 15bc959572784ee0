#pragma once
// A model's tensors copied into VRAM, with the shapes the kernels need.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "models/weights.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/layout.h"

namespace moe::cuda {

// A matrix (or n stacked experts) in its GGUF format on the GPU; Q8_0 rows in the split
// layout (layout.h) unless uploaded as they are.
struct GpuMatrix {
  GgmlType type = GgmlType::F32;
  GpuLayout layout = GpuLayout::Gguf;
  int64_t rows = 0, cols = 0;
  size_t row_stride = 0;
  size_t expert_stride = 0;  // bytes from one expert's matrix to the next (stacked experts)
  std::shared_ptr<DeviceBuffer> data;  // shared by the slices of a stacked upload
  const std::byte* base = nullptr;     // where this matrix's row 0 is

  const void* get() const { return base; }
};

// Uploads; each counts its bytes into `total` (VRAM used for weights). `as_is`: keep the file's
// blocks (a table read by get_rows(), the token embeddings).
GpuMatrix upload(const WeightView& w, size_t& total, bool as_is = false);
// `extra`: one more matrix of the experts' shape appended as expert n_expert (Qwen3-Next's
// shared expert, run as one more routed expert).
GpuMatrix upload(const ExpertWeights& w, size_t& total, const WeightView* extra = nullptr);
DeviceBuffer upload(const std::vector<float>& v, size_t& total);

// Matrices of one type and width stacked into one (rows one after another), so that a single
// product computes all of them (q, k and v of a layer); nullopt when types or widths differ.
std::optional<GpuMatrix> upload_stacked(std::span<const WeightView> parts, size_t& total);
// Rows [row0, row0 + rows) of a matrix, sharing its memory.
GpuMatrix slice(const GpuMatrix& m, int64_t row0, int64_t rows);

// Two expert tensors of one type and shape interleaved per expert (expert e: a's rows, then
// b's): one expert product gives an expert's gate and up rows together. nullopt when they
// differ in type or shape.
std::optional<GpuMatrix> upload_paired(const ExpertWeights& a, const ExpertWeights& b, size_t& total,
                                       const WeightView* extra_a = nullptr, const WeightView* extra_b = nullptr);

// Whether m can be appended to the experts as one more (same type and shape, rows in place).
bool fits_as_expert(const ExpertWeights& experts, const WeightView& m);

}  // namespace moe::cuda
