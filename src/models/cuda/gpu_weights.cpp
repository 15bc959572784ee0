#include "models/cuda/gpu_weights.h"

#include "core/error.h"
#include "ops/cuda/cuda_check.h"

namespace moe::cuda {

namespace {
DeviceBuffer copy_to_device(const void* host, size_t bytes, size_t& total) {
  DeviceBuffer d(bytes);
  MOE_CUDA_CHECK(cudaMemcpy(d.get(), host, bytes, cudaMemcpyHostToDevice));
  total += bytes;
  return d;
}
}  // namespace

GpuMatrix upload(const WeightView& w, size_t& total) {
  if (w.layout != WeightLayout::Rows) fail("GPU upload: {} weights are repacked for the CPU", type_name(w.type));
  return {w.type, w.rows, w.cols, w.row_stride, w.bytes(), copy_to_device(w.data, w.bytes(), total)};
}

GpuMatrix upload(const ExpertWeights& w, size_t& total) {
  const WeightView& f = w.first;
  if (f.layout != WeightLayout::Rows) fail("GPU upload: {} experts are repacked for the CPU", type_name(f.type));
  return {f.type, f.rows, f.cols, f.row_stride, w.expert_stride,
          copy_to_device(f.data, w.expert_stride * size_t(w.n_expert), total)};
}

DeviceBuffer upload(const std::vector<float>& v, size_t& total) {
  return copy_to_device(v.data(), v.size() * sizeof(float), total);
}

}  // namespace moe::cuda
