#include "ops/cuda/activations.h"

#include "core/error.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/ops.h"

namespace moe::cuda {

namespace {
// Grows `buffer` to at least `bytes` (contents are not kept).
void reserve(DeviceBuffer& buffer, size_t bytes) {
  if (buffer.bytes() < bytes) buffer = DeviceBuffer(bytes);
}
}  // namespace

void ActivationBuffer::reserve_for(GgmlType type, int n_tok, int64_t cols) {
  if (n_tok < 0 || cols <= 0) fail("activations: {} tokens of {} columns", n_tok, cols);
  if (type != GgmlType::Q8_0 && type != GgmlType::Q8_K) {
    fail("activations cannot be quantized to {} on the GPU (F32, Q8_0 or Q8_K)", type_name(type));
  }
  const int64_t block = block_size(type);
  if (cols % block != 0) fail("activations: {} columns is not a multiple of the {} block size {}", cols, type_name(type), block);
  const int64_t n = cols * n_tok;
  reserve(qs_, size_t(n));
  reserve(scales_, size_t(n / block) * sizeof(float));
  if (type == GgmlType::Q8_K) reserve(sums_, size_t(n / 16) * sizeof(int));
}

DeviceActivations ActivationBuffer::view(GgmlType type, int n_tok, int64_t cols) const {
  DeviceActivations a{type, cols, n_tok};
  a.qs = qs_.as<int8_t>();
  a.scales = scales_.as<float>();
  a.sums = type == GgmlType::Q8_K ? sums_.as<int>() : nullptr;
  return a;
}

DeviceActivations ActivationBuffer::quantize(GgmlType type, const float* x, int n_tok, int64_t cols,
                                             cudaStream_t stream) {
  if (type == GgmlType::F32) {
    if (n_tok < 0 || cols <= 0) fail("activations: {} tokens of {} columns", n_tok, cols);
    DeviceActivations a{type, cols, n_tok};
    a.f32 = x;
    return a;
  }
  reserve_for(type, n_tok, cols);
  const int64_t n = cols * n_tok;
  if (n > 0) {
    if (type == GgmlType::Q8_0) {
      MOE_CUDA_CHECK(launch_quantize_q8_0(x, n, qs_.as<int8_t>(), scales_.as<float>(), stream));
    } else {
      MOE_CUDA_CHECK(launch_quantize_q8_k(x, n, qs_.as<int8_t>(), scales_.as<float>(), sums_.as<int>(), stream));
    }
  }
  return view(type, n_tok, cols);
}

DeviceActivations ActivationBuffer::quantize_normed(GgmlType type, const float* x, const float* w, float eps,
                                                    int n_tok, int64_t cols, float* out, cudaStream_t stream) {
  reserve_for(type, n_tok, cols);
  if (cols > kMaxFusedWidth) {  // wider than the fused kernel keeps in shared memory: two launches
    MOE_CUDA_CHECK(rms_norm(x, w, eps, n_tok, int(cols), out, stream));
    return quantize(type, out, n_tok, cols, stream);
  }
  MOE_CUDA_CHECK(launch_norm_quantize(x, w, eps, n_tok, cols, out, type == GgmlType::Q8_K, qs_.as<int8_t>(),
                                      scales_.as<float>(), sums_.as<int>(), stream));
  return view(type, n_tok, cols);
}

DeviceActivations ActivationBuffer::combine_quantize_normed(GgmlType type, const CombineRows& c, float* x,
                                                            const float* w, float eps, int n_tok, int64_t cols,
                                                            float* out, cudaStream_t stream) {
  if (cols > kMaxFusedWidth) fail("combine_quantize_normed: rows of {} values (at most {})", cols, kMaxFusedWidth);
  if (c.k < 1 || (c.shared == nullptr) != (c.shared_logit == nullptr)) {
    fail("combine_quantize_normed: {} experts a token, a shared expert without its gate or the reverse", c.k);
  }
  reserve_for(type, n_tok, cols);
  MOE_CUDA_CHECK(launch_combine_norm_quantize(c, x, w, eps, n_tok, cols, out, type == GgmlType::Q8_K,
                                              qs_.as<int8_t>(), scales_.as<float>(), sums_.as<int>(), stream));
  return view(type, n_tok, cols);
}

ActivationBuffer::Target ActivationBuffer::target(GgmlType type, int n_tok, int64_t cols) {
  reserve_for(type, n_tok, cols);
  return {qs_.as<int8_t>(), scales_.as<float>(), sums_.as<int>(), view(type, n_tok, cols)};
}

DeviceActivations ActivationBuffer::quantize_swiglu(GgmlType type, const float* y, int rows, int64_t width,
                                                    cudaStream_t stream) {
  if (width > kMaxFusedWidth) fail("quantize_swiglu: rows of {} values (at most {})", width, kMaxFusedWidth);
  reserve_for(type, rows, width);
  MOE_CUDA_CHECK(launch_swiglu_quantize(y, rows, width, type == GgmlType::Q8_K, qs_.as<int8_t>(), scales_.as<float>(),
                                        sums_.as<int>(), stream));
  return view(type, rows, width);
}

DeviceActivations ActivationBuffer::quantize_gated_norm(GgmlType type, const float* x, const float* z, const float* w,
                                                        float eps, int rows, int64_t width, int head_width,
                                                        cudaStream_t stream) {
  if (width > kMaxFusedWidth || head_width <= 0 || width % head_width != 0) {
    fail("quantize_gated_norm: rows of {} values in heads of {} (at most {} values)", width, head_width, kMaxFusedWidth);
  }
  reserve_for(type, rows, width);
  MOE_CUDA_CHECK(launch_gated_norm_quantize(x, z, w, eps, rows, width, head_width, type == GgmlType::Q8_K,
                                            qs_.as<int8_t>(), scales_.as<float>(), sums_.as<int>(), stream));
  return view(type, rows, width);
}

}  // namespace moe::cuda
