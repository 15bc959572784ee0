#pragma once
// Dequantization on the GPU (the first op of the CUDA backend; the rest arrive with the
// CUDA-backend issue). Checked against the CPU reference by tests/cuda.
#include <cstddef>
#include <cstdint>
#include <span>

#include <cuda_runtime.h>

#include "core/ggml_type.h"

namespace moe::cuda {

// Device pointers: `blocks` holds n/32 Q8_0 blocks, `out` n floats. n must be a multiple of 32.
void dequantize_q8_0(const void* blocks, float* out, int64_t n, cudaStream_t stream);

// Host convenience for tests: uploads, dequantizes, downloads.
void dequantize_on_gpu(GgmlType type, std::span<const std::byte> blocks, std::span<float> out);

// The kernel launch itself (dequantize.cu); callers use the checked functions above.
cudaError_t launch_dequantize_q8_0(const void* blocks, float* out, int64_t n, cudaStream_t stream);

}  // namespace moe::cuda
