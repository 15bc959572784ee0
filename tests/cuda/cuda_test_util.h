#pragma once
// Shared by the GPU tests.
#include <vector>

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

}  // namespace moe::test
