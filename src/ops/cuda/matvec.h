#pragma once
// Weight matrix times a few activation vectors on the GPU: the decode-time product.
//   y[t][r] = sum_i W[r][i] * x[t][i]   for t < n_tok, r < rows
// W is in its GGUF format (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F16, BF16, F32), rows row_stride
// bytes apart; y is f32, token-major. The activations come quantized as the CPU quantizes
// them (activations.h: Q8_0 for Q8_0/Q4_0 weights, Q8_K for the K-quants, F32 for float
// weights, the pairing of ops/cpu/vec_dot.h), so the integer sums of every block are the CPU
// kernels' and the results agree with the CPU's to float rounding. Each weight is read once
// per launch for all tokens. Checked against the CPU by tests/cuda/test_cuda_matvec.cpp.
#include <cstddef>
#include <cstdint>
#include <span>

#include <cuda_runtime.h>

#include "core/ggml_type.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/route_target.h"

namespace moe::cuda {

constexpr int kMaxMatvecTokens = 8;

bool has_matvec(GgmlType type);

// Device pointers. With `accumulate`, y += W x (the residual add fused into the product).
// Throws moe::Error for an unsupported type, activations of the wrong type or length, a row
// stride shorter than a row, or n_tok outside 1..kMaxMatvecTokens.
// `layout`: how w's rows lie (layout.h; Q8_0Split for Q8_0 only).
void matvec(GgmlType type, const void* w, size_t row_stride, int64_t rows, const DeviceActivations& x, float* y,
            cudaStream_t stream, bool accumulate = false, GpuLayout layout = GpuLayout::Gguf);

// The MoE expert products of one step in one launch, for x.n_tok * x_row_div output rows:
// output row j is activation row j / x_row_div (x_row_div = experts per token reads each
// token's row once per expert it goes to) through expert experts[j] (device int32), whose
// rows x cols matrix starts at w + experts[j] * expert_stride:
//   y[j * y_stride + r] = sum_i W_e[r][i] * x[j / x_row_div][i]   (y_stride 0: rows).
// An id < 0 is a slot computed elsewhere: -1 (the hybrid engine's CPU) leaves a zero row of y,
// any other negative id leaves the row as it is (another launch writes it).
void matvec_experts(GgmlType type, const void* w, size_t expert_stride, size_t row_stride, int64_t rows,
                    const DeviceActivations& x, const int32_t* experts, float* y, cudaStream_t stream,
                    int x_row_div = 1, GpuLayout layout = GpuLayout::Gguf, int64_t y_stride = 0);

// matvec() of one token whose last thread block to finish then routes it over the product y
// (the router's logits, rows = route.n_expert, or + 1 with the shared expert's gate row): the
// results of route_top_k() (ops.h) on y, in one launch. route.counter: a device unsigned,
// zero, left zero; one launch at a time uses it.
void matvec_route(GgmlType type, const void* w, size_t row_stride, int64_t rows, const DeviceActivations& x, float* y,
                  const RouteTarget& route, cudaStream_t stream, GpuLayout layout = GpuLayout::Gguf);

// matvec_experts() (x_row_div 1) of the quantized SwiGLU of n rows gu = [gate | up] ([n][2 *
// cols] f32), in one launch: the bits of ActivationBuffer::quantize_swiglu() and then
// matvec_experts(). Quantized weights only; cols at most ActivationBuffer::kMaxFusedWidth.
void matvec_experts_swiglu(GgmlType type, const void* w, size_t expert_stride, size_t row_stride, int64_t rows,
                           const float* gu, int n, int64_t cols, const int32_t* experts, float* y,
                           cudaStream_t stream, GpuLayout layout = GpuLayout::Gguf);

// Host convenience for tests: uploads, quantizes the activations, multiplies, downloads.
void matvec_on_gpu(GgmlType type, std::span<const std::byte> w, int64_t rows, int64_t cols, std::span<const float> x,
                   int n_tok, std::span<float> y);

// The kernel launches (matvec.cu); callers use the checked functions above.
cudaError_t launch_matvec(GgmlType type, GpuLayout layout, const void* w, size_t row_stride, int64_t rows,
                          const DeviceActivations& x, float* y, bool accumulate, cudaStream_t stream,
                          const RouteTarget* route = nullptr);
cudaError_t launch_matvec_experts(GgmlType type, GpuLayout layout, const void* w, size_t expert_stride,
                                  size_t row_stride, int64_t rows, const DeviceActivations& x, int x_row_div,
                                  const int32_t* experts, float* y, int64_t y_stride, cudaStream_t stream);
cudaError_t launch_matvec_experts_swiglu(GgmlType type, GpuLayout layout, const void* w, size_t expert_stride,
                                         size_t row_stride, int64_t rows, const float* gu, int n, int64_t cols,
                                         const int32_t* experts, float* y, cudaStream_t stream);

}  // namespace moe::cuda
