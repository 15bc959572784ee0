#pragma once
// A model's tensors copied into VRAM, with the shapes the kernels need.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "models/weights.h"
#include "ops/cuda/device_buffer.h"

namespace moe::cuda {

// A matrix (or n stacked experts) in its GGUF format on the GPU.
struct GpuMatrix {
  GgmlType type = GgmlType::F32;
  int64_t rows = 0, cols = 0;
  size_t row_stride = 0;
  size_t expert_stride = 0;  // bytes from one expert's matrix to the next (stacked experts)
  DeviceBuffer data;
};

// Uploads; each counts its bytes into `total` (VRAM used for weights).
GpuMatrix upload(const WeightView& w, size_t& total);
GpuMatrix upload(const ExpertWeights& w, size_t& total);
DeviceBuffer upload(const std::vector<float>& v, size_t& total);

}  // namespace moe::cuda
