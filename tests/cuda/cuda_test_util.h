#pragma once
// Shared by the GPU tests.
#include <vector>

#include "core/ggml_type.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/device_buffer.h"

namespace moe::test {

// A device copy of a host vector, and back.
template <typename T>
struct Device {
  cuda::DeviceBuffer buffer;
  size_t n;
  explicit Device(const std::vector<T>& host) : buffer(host.size() * sizeof(T)), n(host.size()) {
    MOE_CUDA_CHECK(cudaMemcpy(buffer.get(), host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  explicit Device(size_t count) : buffer(count * sizeof(T)), n(count) {}
  T* get() const { return buffer.as<T>(); }
  std::vector<T> host() const {
    std::vector<T> out(n);
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    MOE_CUDA_CHECK(cudaMemcpy(out.data(), buffer.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }
};

// n values from device memory (after everything queued on the device).
template <typename T>
std::vector<T> download(const T* p, size_t n) {
  std::vector<T> out(n);
  MOE_CUDA_CHECK(cudaDeviceSynchronize());
  MOE_CUDA_CHECK(cudaMemcpy(out.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return out;
}

// Quantized activations' bytes and scales (and sums for Q8_K) as host vectors, for comparison.
struct Quantized {
  std::vector<int8_t> qs;
  std::vector<float> scales;
  std::vector<int> sums;
  bool operator==(const Quantized&) const = default;
};
inline Quantized download(const cuda::DeviceActivations& a) {
  const size_t n = size_t(a.n_tok) * size_t(a.cols), block = a.type == GgmlType::Q8_K ? 256 : 32;
  Quantized q{download(a.qs, n), download(a.scales, n / block), {}};
  if (a.type == GgmlType::Q8_K) q.sums = download(a.sums, n / 16);
  return q;
}

}  // namespace moe::test
