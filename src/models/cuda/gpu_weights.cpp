#include "models/cuda/gpu_weights.h"

#include "core/error.h"
#include "ops/cuda/cuda_check.h"

namespace moe::cuda {

namespace {
DeviceBuffer copy_to_device(const void* host, size_t bytes, size_t& total) {
  DeviceBuffer d(bytes);
  MOE_CUDA_CHECK(cudaMemcpy(d.get(), host, bytes, cudaMemcpyHostToDevice));
  total += bytes;
  return d;
}

// The uploaded rows as a matrix; Q8_0 rows go into the split layout (every row of the buffer:
// stacked, paired and expert matrices are rows of one width), unless `as_is`.
GpuMatrix matrix_on(std::shared_ptr<DeviceBuffer> data, GgmlType type, int64_t rows, int64_t cols, size_t row_stride,
                    size_t expert_stride, bool as_is = false) {
  GpuLayout layout = GpuLayout::Gguf;
  if (type == GgmlType::Q8_0 && !as_is && cols % 32 == 0) {
    const int64_t all_rows = int64_t(data->bytes() / row_stride);
    const size_t stride = q8_0_split_stride(cols);
    auto split = std::make_shared<DeviceBuffer>(stride * size_t(all_rows));
    MOE_CUDA_CHECK(relayout_q8_0_split(data->get(), row_stride, all_rows, cols, split->get(), stride, nullptr));
    MOE_CUDA_CHECK(cudaDeviceSynchronize());
    expert_stride = expert_stride / row_stride * stride;
    row_stride = stride;
    data = std::move(split);
    layout = GpuLayout::Q8_0Split;
  }
  const auto* base = data->as<std::byte>();
  return {type, layout, rows, cols, row_stride, expert_stride, std::move(data), base};
}

void check_rows(const WeightView& w) {
  if (w.layout != WeightLayout::Rows) fail("GPU upload: {} weights are repacked for the CPU", type_name(w.type));
}

}  // namespace

GpuMatrix upload(const WeightView& w, size_t& total, bool as_is) {
  check_rows(w);
  return matrix_on(std::make_shared<DeviceBuffer>(copy_to_device(w.data, w.bytes(), total)), w.type, w.rows, w.cols,
                   w.row_stride, w.bytes(), as_is);
}

bool fits_as_expert(const ExpertWeights& experts, const WeightView& m) {
  const WeightView& f = experts.first;
  return m.layout == WeightLayout::Rows && m.type == f.type && m.rows == f.rows && m.cols == f.cols &&
         m.row_stride == f.row_stride && experts.expert_stride == f.bytes();
}

GpuMatrix upload(const ExpertWeights& w, size_t& total, const WeightView* extra) {
  const WeightView& f = w.first;
  check_rows(f);
  if (extra && !fits_as_expert(w, *extra)) fail("GPU upload: the extra expert does not have the experts' shape");
  const size_t experts_bytes = w.expert_stride * size_t(w.n_expert);
  auto data = std::make_shared<DeviceBuffer>(experts_bytes + (extra ? w.expert_stride : 0));
  MOE_CUDA_CHECK(cudaMemcpy(data->get(), f.data, experts_bytes, cudaMemcpyHostToDevice));
  if (extra) {
    MOE_CUDA_CHECK(cudaMemcpy(data->as<std::byte>() + experts_bytes, extra->data, extra->bytes(), cudaMemcpyHostToDevice));
  }
  total += data->bytes();
  return matrix_on(std::move(data), f.type, f.rows, f.cols, f.row_stride, w.expert_stride);
}

std::optional<GpuMatrix> upload_stacked(std::span<const WeightView> parts, size_t& total) {
  int64_t rows = 0;
  for (const WeightView& p : parts) {
    check_rows(p);
    if (p.type != parts.front().type || p.cols != parts.front().cols || p.row_stride != parts.front().row_stride) {
      return std::nullopt;
    }
    rows += p.rows;
  }
  const WeightView& f = parts.front();
  auto data = std::make_shared<DeviceBuffer>(f.row_stride * size_t(rows));
  size_t at = 0;
  for (const WeightView& p : parts) {
    MOE_CUDA_CHECK(cudaMemcpy(data->as<std::byte>() + at, p.data, p.bytes(), cudaMemcpyHostToDevice));
    at += p.bytes();
  }
  total += at;
  return matrix_on(std::move(data), f.type, rows, f.cols, f.row_stride, at);
}

GpuMatrix slice(const GpuMatrix& m, int64_t row0, int64_t rows) {
  GpuMatrix s = m;
  s.rows = rows;
  s.base = m.base + size_t(row0) * m.row_stride;
  s.expert_stride = m.row_stride * size_t(rows);
  return s;
}

std::optional<GpuMatrix> upload_paired(const ExpertWeights& a, const ExpertWeights& b, size_t& total,
                                       const WeightView* extra_a, const WeightView* extra_b) {
  const WeightView &fa = a.first, &fb = b.first;
  check_rows(fa);
  check_rows(fb);
  if (fa.type != fb.type || fa.rows != fb.rows || fa.cols != fb.cols || a.n_expert != b.n_expert ||
      a.expert_stride != b.expert_stride || a.expert_stride != fa.bytes()) {
    return std::nullopt;
  }
  const bool extra = extra_a && extra_b;
  if (extra && (!fits_as_expert(a, *extra_a) || !fits_as_expert(b, *extra_b))) {
    fail("GPU upload: the extra expert does not have the experts' shape");
  }
  const size_t stride = a.expert_stride;
  auto data = std::make_shared<DeviceBuffer>(2 * stride * size_t(a.n_expert + (extra ? 1 : 0)));
  // Expert e's block of a, then of b: two strided copies, one row of `stride` bytes per expert.
  if (a.n_expert > 0) {
    MOE_CUDA_CHECK(cudaMemcpy2D(data->as<std::byte>(), 2 * stride, fa.data, stride, stride, size_t(a.n_expert),
                                cudaMemcpyHostToDevice));
    MOE_CUDA_CHECK(cudaMemcpy2D(data->as<std::byte>() + stride, 2 * stride, fb.data, stride, stride,
                                size_t(a.n_expert), cudaMemcpyHostToDevice));
  }
  if (extra) {
    std::byte* last = data->as<std::byte>() + 2 * stride * size_t(a.n_expert);
    MOE_CUDA_CHECK(cudaMemcpy(last, extra_a->data, stride, cudaMemcpyHostToDevice));
    MOE_CUDA_CHECK(cudaMemcpy(last + stride, extra_b->data, stride, cudaMemcpyHostToDevice));
  }
  total += data->bytes();
  return matrix_on(std::move(data), fa.type, 2 * fa.rows, fa.cols, fa.row_stride, 2 * stride);
}

DeviceBuffer upload(const std::vector<float>& v, size_t& total) {
  return copy_to_device(v.data(), v.size() * sizeof(float), total);
}

}  // namespace moe::cuda
