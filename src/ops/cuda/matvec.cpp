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

// F32 weights are read 16 bytes at a time.
void check_alignment(GgmlType type, const void* w, size_t row_stride, size_t expert_stride = 0) {
  if (type == GgmlType::F32 && (reinterpret_cast<uintptr_t>(w) % 16 != 0 || row_stride % 16 != 0 || expert_stride % 16 != 0)) {
    fail("matvec: f32 weights at {} with rows {} bytes apart: rows must start 16-byte aligned", w, row_stride);
  }
}

}  // namespace

void matvec(GgmlType type, const void* w, size_t row_stride, int64_t rows, const DeviceActivations& x, float* y,
            cudaStream_t stream, bool accumulate, GpuLayout layout) {
  check_shape(type, rows, x.cols, x.n_tok);
  check_operands(type, row_stride, x, layout);
  check_alignment(type, w, row_stride);
  if (rows == 0) return;
  MOE_CUDA_CHECK(launch_matvec(type, layout, w, row_stride, rows, x, y, accumulate, stream));
}

namespace {

void check_experts(const char* what, size_t expert_stride, size_t row_stride, int64_t rows, int64_t out_rows) {
  if (out_rows > 65535) fail("{}: {} output rows in one launch (at most 65535)", what, out_rows);
  if (expert_stride < row_stride * size_t(rows)) {
    fail("{}: expert stride {} is shorter than {} rows of {} bytes", what, expert_stride, rows, row_stride);
  }
}

}  // namespace

void matvec_experts(GgmlType type, const void* w, size_t expert_stride, size_t row_stride, int64_t rows,
                    const DeviceActivations& x, const int32_t* experts, float* y, cudaStream_t stream, int x_row_div,
                    GpuLayout layout, int64_t y_stride) {
  check_shape(type, rows, x.cols, 1);
  check_operands(type, row_stride, x, layout);
  check_alignment(type, w, row_stride, expert_stride);
  if (x_row_div < 1) fail("matvec_experts: x_row_div {} (at least 1)", x_row_div);
  if (y_stride == 0) y_stride = rows;
  if (y_stride < rows) fail("matvec_experts: output rows {} apart, shorter than {} values", y_stride, rows);
  check_experts("matvec_experts", expert_stride, row_stride, rows, int64_t(x.n_tok) * x_row_div);
  if (rows == 0 || x.n_tok == 0) return;
  MOE_CUDA_CHECK(launch_matvec_experts(type, layout, w, expert_stride, row_stride, rows, x, x_row_div, experts, y,
                                       y_stride, stream));
}

void matvec_route(GgmlType type, const void* w, size_t row_stride, int64_t rows, const DeviceActivations& x, float* y,
                  const RouteTarget& route, cudaStream_t stream, GpuLayout layout) {
  check_shape(type, rows, x.cols, x.n_tok);
  check_operands(type, row_stride, x, layout);
  check_alignment(type, w, row_stride);
  const int width = route.k + (route.shared_expert >= 0 ? 1 : 0);
  if (x.n_tok != 1 || route.n_expert < 1 || route.n_expert > 512 || route.k < 1 || route.k > route.n_expert ||
      width > 32 || rows < route.n_expert + (route.shared_expert >= 0 ? 1 : 0) || route.counter == nullptr) {
    fail("matvec_route: {} tokens, {} rows, top {} of {} experts (one token, up to 512 experts and 32 a token)",
         x.n_tok, rows, route.k, route.n_expert);
  }
  MOE_CUDA_CHECK(launch_matvec(type, layout, w, row_stride, rows, x, y, false, stream, &route));
}

void matvec_experts_swiglu(GgmlType type, const void* w, size_t expert_stride, size_t row_stride, int64_t rows,
                           const float* gu, int n, int64_t cols, const int32_t* experts, float* y,
                           cudaStream_t stream, GpuLayout layout) {
  check_shape(type, rows, cols, 1);
  const GgmlType at = vec_dot_type(type);
  if (at == GgmlType::F32 || cols > ActivationBuffer::kMaxFusedWidth) {
    fail("matvec_experts_swiglu: {} weights of {} columns (quantized, at most {})", type_name(type), cols,
         ActivationBuffer::kMaxFusedWidth);
  }
  DeviceActivations x{at, cols, n};  // the activations the kernel makes, for the checks
  check_operands(type, row_stride, x, layout);
  check_experts("matvec_experts_swiglu", expert_stride, row_stride, rows, n);
  if (rows == 0 || n == 0) return;
  MOE_CUDA_CHECK(
      launch_matvec_experts_swiglu(type, layout, w, expert_stride, row_stride, rows, gu, n, cols, experts, y, stream));
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
