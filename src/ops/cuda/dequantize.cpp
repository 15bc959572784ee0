#include "ops/cuda/dequantize.h"

#include "core/error.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/device_buffer.h"

namespace moe::cuda {

void dequantize_q8_0(const void* blocks, float* out, int64_t n, cudaStream_t stream) {
  if (n % block_size(GgmlType::Q8_0) != 0) fail("dequantize_q8_0: {} values is not a multiple of 32", n);
  if (n == 0) return;
  MOE_CUDA_CHECK(launch_dequantize_q8_0(blocks, out, n, stream));
}

void dequantize_on_gpu(GgmlType type, std::span<const std::byte> blocks, std::span<float> out) {
  if (type != GgmlType::Q8_0) fail("dequantize_on_gpu: {} is not implemented on the GPU yet", type_name(type));
  if (out.size() % block_size(type) != 0 || blocks.size() != row_bytes(type, out.size())) {
    fail("dequantize_on_gpu: {} bytes do not hold {} q8_0 values", blocks.size(), out.size());
  }
  DeviceBuffer in(blocks.size()), result(out.size_bytes());
  MOE_CUDA_CHECK(cudaMemcpy(in.get(), blocks.data(), blocks.size(), cudaMemcpyHostToDevice));
  dequantize_q8_0(in.get(), result.as<float>(), int64_t(out.size()), nullptr);
  MOE_CUDA_CHECK(cudaMemcpy(out.data(), result.get(), out.size_bytes(), cudaMemcpyDeviceToHost));
}

}  // namespace moe::cuda
