#pragma once
// Weight matrix times a few activation vectors on the GPU: the decode-time product.
//   y[t][r] = sum_i W[r][i] * x[t][i]   for t < n_tok, r < rows
// W is in its GGUF format (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F16, BF16, F32), rows row_stride
// bytes apart; x and y are f32, token-major. Each weight value is decoded once per launch and
// used for every token; activations stay in f32 (no second rounding on top of the weights').
// Checked against the CPU reference by tests/cuda/test_cuda_matvec.cpp.
#include <cstddef>
#include <cstdint>
#include <span>

#include <cuda_runtime.h>

#include "core/ggml_type.h"

namespace moe::cuda {

constexpr int kMaxMatvecTokens = 8;

bool has_matvec(GgmlType type);

// Device pointers. Throws moe::Error for an unsupported type, a column count that is not a
// multiple of the format's block size, or n_tok outside 1..kMaxMatvecTokens.
void matvec(GgmlType type, const void* w, size_t row_stride, int64_t rows, int64_t cols, const float* x, int n_tok,
            float* y, cudaStream_t stream);

// Host convenience for tests and benchmarks: uploads, multiplies, downloads.
void matvec_on_gpu(GgmlType type, std::span<const std::byte> w, int64_t rows, int64_t cols, std::span<const float> x,
                   int n_tok, std::span<float> y);

// The kernel launch itself (matvec.cu); callers use the checked functions above.
cudaError_t launch_matvec(GgmlType type, const void* w, size_t row_stride, int64_t rows, int64_t cols,
                          const float* x, int n_tok, float* y, cudaStream_t stream);

}  // namespace moe::cuda
