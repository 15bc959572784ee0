#include "ops/cuda/matvec.h"

#include "core/error.h"
#include "ops/cpu/vec_dot.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/device_buffer.h"

namespace moe::cuda {

bool has_matvec(GgmlType type) {
  switch (type) {
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: return true;
    default: return false;
  }
}

namespace {

// The GPU kernels take 16 quantized (8 float) values a task; quantized rows are whole blocks.
int64_t column_multiple(GgmlType type) { return std::max<int64_t>(block_size(type) == 1 ? 8 : 16, block_size(type)); }

void check_shape(GgmlType type, int64_t rows, int64_t cols, int n_tok) {
  if (!has_matvec(type)) fail("matvec: no GPU kernel for {} weights", type_name(type));
  const int64_t multiple = column_multiple(type);
  if (rows < 0 || cols <= 0 || cols % multiple != 0) {
    fail("matvec: {} x {} {} weights: columns must be a positive multiple of {}", rows, cols, type_name(type), multiple);
  }
  if (n_tok < 1 || n_tok > kMaxMatvecTokens) fail("matvec: {} tokens (1 to {} per call)", n_tok, kMaxMatvecTokens);
}

}  // namespace

namespace {

void check_operands(GgmlType type, size_t row_stride, const DeviceActivations& x, GpuLayout layout) {
  if (layout == GpuLayout::Q8_0Split && type != GgmlType::Q8_0) {
    fail("matvec: the split layout is for Q8_0 weights, not {}", type_name(type));
  }
  if (x.type != vec_dot_type(type)) {
    fail("matvec: {} weights need {} activations, got {}", type_name(type), type_name(vec_dot_type(type)),
         type_name(x.type));
  }
  const size_t need = layout == GpuLayout::Q8_0Split ? q8_0_split_stride(x.cols) : row_bytes(type, uint64_t(x.cols));
  if (row_stride < need) {
    fail("matvec: row stride {} is shorter than a {} row of {} values", row_stride, type_name(type), x.cols);
  }
}

}  // namespace

void matvec(GgmlType type, const void* w, size_t row_stride, int64_t rows, const DeviceActivations& x, float* y,
            cudaStream_t stream, bool accumulate, GpuLayout layout) {
  check_shape(type, rows, x.cols, x.n_tok);
  check_operands(type, row_stride, x, layout);
  if (rows == 0) return;
  MOE_CUDA_CHECK(launch_matvec(type, layout, w, row_stride, rows, x, y, accumulate, stream));
}

void matvec_experts(GgmlType type, const void* w, size_t expert_stride, size_t row_stride, int64_t rows,
                    const DeviceActivations& x, const int32_t* experts, float* y, cudaStream_t stream, int x_row_div,
                    GpuLayout layout) {
  check_shape(type, rows, x.cols, 1);
  check_operands(type, row_stride, x, layout);
  if (x_row_div < 1) fail("matvec_experts: x_row_div {} (at least 1)", x_row_div);
  if (int64_t(x.n_tok) * x_row_div > 65535) {
    fail("matvec_experts: {} output rows in one launch (at most 65535)", int64_t(x.n_tok) * x_row_div);
  }
  if (expert_stride < row_stride * size_t(rows)) {
    fail("matvec_experts: expert stride {} is shorter than {} rows of {} bytes", expert_stride, rows, row_stride);
  }
  if (rows == 0 || x.n_tok == 0) return;
  MOE_CUDA_CHECK(
      launch_matvec_experts(type, layout, w, expert_stride, row_stride, rows, x, x_row_div, experts, y, stream));
}

void matvec_on_gpu(GgmlType type, std::span<const std::byte> w, int64_t rows, int64_t cols, std::span<const float> x,
                   int n_tok, std::span<float> y) {
  check_shape(type, rows, cols, n_tok);
  const size_t rb = row_bytes(type, uint64_t(cols));
  if (w.size() != rb * size_t(rows) || x.size() != size_t(n_tok * cols) || y.size() != size_t(n_tok * rows)) {
    fail("matvec_on_gpu: {} weight bytes, {} activations, {} outputs do not fit {} x {} {} and {} tokens", w.size(),
         x.size(), y.size(), rows, cols, type_name(type), n_tok);
  }
  DeviceBuffer dw(w.size()), dx(x.size_bytes()), dy(y.size_bytes());
  MOE_CUDA_CHECK(cudaMemcpy(dw.get(), w.data(), w.size(), cudaMemcpyHostToDevice));
  MOE_CUDA_CHECK(cudaMemcpy(dx.get(), x.data(), x.size_bytes(), cudaMemcpyHostToDevice));
  ActivationBuffer activations;
  const DeviceActivations a = activations.quantize(vec_dot_type(type), dx.as<float>(), n_tok, cols, nullptr);
  matvec(type, dw.get(), rb, rows, a, dy.as<float>(), nullptr);
  MOE_CUDA_CHECK(cudaMemcpy(y.data(), dy.get(), y.size_bytes(), cudaMemcpyDeviceToHost));
}

}  // namespace moe::cuda
