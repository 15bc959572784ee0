#pragma once
// Activations as the GPU's integer kernels read them: quantized on the GPU with the CPU's exact
// rounding (ops/cpu/quantize.cpp), so that a product's integer block sums are the CPU's and the
// two backends differ only in the order of float additions.
//   Q8_0 (for Q8_0 / Q4_0 weights): per 32 values d = amax / 127, q = roundf(x / d); the scale
//        used in products is d rounded to f16, as the CPU's block stores it.
//   Q8_K (for the K-quants): per 256 values d = max / -127 (max: the signed value of largest
//        magnitude), q = min(127, rint(x / d)); sums of 16 consecutive q.
//   F32 (float weights): the values as they are.
// Laid out for the GPU rather than as GGUF blocks: int8 values [token][cols] (16-byte aligned
// rows), f32 scales [token][cols / block], int32 sums [token][cols / 16].
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "core/ggml_type.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/handoff.h"

// Callable from host and device code (the structs below are used by both).
#ifdef __CUDACC__
#define MOE_HOST_DEVICE __host__ __device__
#else
#define MOE_HOST_DEVICE
#endif

namespace moe::cuda {

struct DeviceActivations {
  GgmlType type = GgmlType::F32;  // F32, Q8_0 or Q8_K
  int64_t cols = 0;
  int n_tok = 0;
  const float* f32 = nullptr;   // F32: [n_tok][cols]
  const int8_t* qs = nullptr;   // Q8_0 / Q8_K: [n_tok][cols]
  const float* scales = nullptr;  // [n_tok][cols / 32] (Q8_0) or [n_tok][cols / 256] (Q8_K)
  const int* sums = nullptr;    // Q8_K: [n_tok][cols / 16]

  // Tokens [first, first + count) alone.
  MOE_HOST_DEVICE DeviceActivations rows(int64_t first, int count) const {
    DeviceActivations r = *this;
    r.n_tok = count;
    const int64_t skip = first * cols;
    if (r.f32) r.f32 += skip;
    if (r.qs) r.qs += skip;
    if (r.scales) r.scales += skip / (type == GgmlType::Q8_K ? 256 : 32);
    if (r.sums) r.sums += skip / 16;
    return r;
  }
};

// The inputs of an MoE combine (combine_experts() in ops.h): per token k expert output rows and
// their weights, and Qwen3-Next's shared expert with its gate logit (optional).
struct CombineRows {
  const float* rows = nullptr;     // [n_tok][k][width]
  const float* weights = nullptr;  // [n_tok][k]
  int k = 0;
  const float* shared = nullptr;        // [n_tok][width], or null
  const float* shared_logit = nullptr;  // token t's at [t * logit_stride]
  int64_t logit_stride = 1;
  // The hybrid's CPU sum of layer cpu_layer (handoff.h), where cpu.sum is set: the combine
  // waits for it and adds it to x first, with the bits of add_cpu_sum() before the combine
  // (combine_quantize_normed only; one launch less in a hybrid layer's serial part).
  ExpertHandoff cpu{};
  int cpu_layer = 0;
};

// Owns the device memory of quantized activations; reused between calls (grows as needed).
class ActivationBuffer {
 public:
  // x: device pointer to n_tok rows of cols floats. For F32 the view points at x itself.
  // Throws moe::Error for other types or a cols that is not a multiple of the block size.
  DeviceActivations quantize(GgmlType type, const float* x, int n_tok, int64_t cols, cudaStream_t stream);
  // out = rms_norm(x, w) (ops.h, the same arithmetic) and its quantization, in one launch: the
  // normed rows are wanted both in f32 and quantized for the next products. type Q8_0 or Q8_K.
  DeviceActivations quantize_normed(GgmlType type, const float* x, const float* w, float eps, int n_tok, int64_t cols,
                                    float* out, cudaStream_t stream);
  // The quantized swiglu_pairs(y) (ops.h) of rows = [gate | up] of 2 * width values, in one
  // launch; width at most kMaxFusedWidth (else run swiglu_pairs() and quantize()).
  static constexpr int64_t kMaxFusedWidth = 8192;
  DeviceActivations quantize_swiglu(GgmlType type, const float* y, int rows, int64_t width, cudaStream_t stream);
  // combine_experts(rows..., x, accumulate) (ops.h), then quantize_normed(x, w, eps, ..., out):
  // the experts' outputs added to the residual stream x and the next block's normed input made
  // from the new x, in one launch and with the bits of the two calls; type Q8_0 or Q8_K, cols at
  // most kMaxFusedWidth.
  DeviceActivations combine_quantize_normed(GgmlType type, const CombineRows& c, float* x, const float* w, float eps,
                                            int n_tok, int64_t cols, float* out, cudaStream_t stream);
  // Room for n_tok rows of cols values of `type` (Q8_0 or Q8_K) that a fused kernel writes
  // itself: the pointers it writes through, and the view of the result.
  struct Target {
    int8_t* qs;
    float* scales;
    int* sums;
    DeviceActivations view;
  };
  Target target(GgmlType type, int n_tok, int64_t cols);
  // The quantized gated_rms_norm(x, z, w) (delta_net.h) of rows of `width` values made of heads
  // of head_width values, in one launch; width at most kMaxFusedWidth.
  DeviceActivations quantize_gated_norm(GgmlType type, const float* x, const float* z, const float* w, float eps,
                                        int rows, int64_t width, int head_width, cudaStream_t stream);

 private:
  void reserve_for(GgmlType type, int n_tok, int64_t cols);
  DeviceActivations view(GgmlType type, int n_tok, int64_t cols) const;

  DeviceBuffer qs_, scales_, sums_;
};

// The launches (activations.cu).
cudaError_t launch_quantize_q8_0(const float* x, int64_t n, int8_t* qs, float* scales, cudaStream_t stream);
cudaError_t launch_quantize_q8_k(const float* x, int64_t n, int8_t* qs, float* scales, int* sums, cudaStream_t stream);
cudaError_t launch_swiglu_quantize(const float* y, int64_t rows, int64_t width, bool k_quant, int8_t* qs,
                                   float* scales, int* sums, cudaStream_t stream);
cudaError_t launch_gated_norm_quantize(const float* x, const float* z, const float* w, float eps, int64_t rows,
                                       int64_t width, int head_width, bool k_quant, int8_t* qs, float* scales,
                                       int* sums, cudaStream_t stream);
cudaError_t launch_combine_norm_quantize(const CombineRows& c, float* x, const float* w, float eps, int64_t rows,
                                         int64_t width, float* out, bool k_quant, int8_t* qs, float* scales,
                                         int* sums, cudaStream_t stream);
cudaError_t launch_norm_quantize(const float* x, const float* w, float eps, int64_t rows, int64_t width, float* out,
                                 bool k_quant, int8_t* qs, float* scales, int* sums, cudaStream_t stream);

}  // namespace moe::cuda
