#include "models/weights.h"

#include <chrono>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "ops/cpu/quantize.h"
#include "ops/cpu/vec_dot.h"

namespace moe {

const gguf::TensorInfo& WeightLoader::checked(const std::string& name, std::initializer_list<int64_t> shape) const {
  const gguf::TensorInfo& t = reader_.tensor(name);
  bool same = t.n_dims == shape.size();
  size_t d = 0;
  for (int64_t n : shape) same = same && t.ne[d++] == n;
  if (!same) {
    std::string expected = "[";
    for (int64_t n : shape) expected += fmt::format("{}{}", expected.size() > 1 ? ", " : "", n);
    fail("{}: tensor {} has shape {}, the hyperparameters need {}]", reader_.path(), name, t.shape_string(), expected);
  }
  return t;
}

std::optional<WeightView> RepackedWeights::repack(const gguf::Reader& reader, const gguf::TensorInfo& t, int64_t rows,
                                                  int64_t cols, int n_matrices) {
  const WeightLayout layout = interleaved_layout(t.type);
  if (layout == WeightLayout::Rows || rows % kInterleaveRows != 0) return std::nullopt;
  const auto start = std::chrono::steady_clock::now();
  const int64_t groups = rows / kInterleaveRows * n_matrices;  // stacked matrices: one long matrix
  const size_t group_bytes = interleaved_group_bytes(layout, cols);
  HugePageBuffer& buffer =
      buffers_.emplace_back(group_bytes * size_t(groups), fmt::format("{}: repacking tensor {}", reader.path(), t.name));
  // Large tensors over all cores: loading a model repacks gigabytes.
  constexpr int64_t kGroupsPerTask = 64;
  const auto n_tasks = static_cast<size_t>((groups + kGroupsPerTask - 1) / kGroupsPerTask);
  auto task = [&](size_t i, int) {
    const int64_t g0 = int64_t(i) * kGroupsPerTask;
    interleave_groups(layout, cols, t.data.data(), t.row_bytes(), g0, std::min(groups, g0 + kGroupsPerTask),
                      buffer.data());
  };
  if (n_tasks > 1) {
    ThreadPool pool{0};
    pool.parallel_for(n_tasks, task);
  } else {
    task(0, 0);
  }
  buffer.seal();
  const MappedFile* mapping = reader.file(t.file_index).mapping();
  if (mapping && mapping->backing() == MappedFile::Backing::Mapped) drop_file_pages(t.data);
  bytes_ += buffer.size();
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return WeightView::interleaved(t.type, layout, rows, cols, buffer.data());
}

WeightView WeightLoader::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const gguf::TensorInfo& t = checked(name, {cols, rows});
  if (!has_vec_dot(t.type)) fail("{}: tensor {} has type {}, which has no CPU kernels yet", reader_.path(), name, type_name(t.type));
  if (repacked_) {
    if (auto view = repacked_->repack(reader_, t, rows, cols, 1)) return *view;
  }
  return WeightView::packed(t.type, rows, cols, t.data.data());
}

ExpertWeights WeightLoader::experts(const std::string& name, int64_t rows, int64_t cols, int n_expert) const {
  const gguf::TensorInfo& t = checked(name, {cols, rows, n_expert});
  if (!has_vec_dot(t.type)) fail("{}: tensor {} has type {}, which has no CPU kernels yet", reader_.path(), name, type_name(t.type));
  if (repacked_) {
    if (auto first = repacked_->repack(reader_, t, rows, cols, n_expert)) return {*first, first->bytes(), n_expert};
  }
  const WeightView first = WeightView::packed(t.type, rows, cols, t.data.data());
  return {first, first.row_stride * size_t(rows), n_expert};
}

std::vector<float> WeightLoader::vector(const std::string& name, int64_t n) const {
  const gguf::TensorInfo& t = checked(name, {n});
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t.type, t.data, out);
  return out;
}

std::vector<float> WeightLoader::gate_vector(const std::string& name, int64_t n) const {
  const gguf::TensorInfo& t = reader_.tensor(name);
  return t.n_dims == 2 ? floats(name, {n, 1}) : vector(name, n);
}

std::vector<float> WeightLoader::floats(const std::string& name, std::initializer_list<int64_t> shape) const {
  const gguf::TensorInfo& t = checked(name, shape);
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  const size_t row = t.row_bytes(), width = size_t(t.ne[0]);
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    dequantize_row(t.type, t.data.subspan(size_t(r) * row, row), std::span(out).subspan(size_t(r) * width, width));
  }
  return out;
}

}  // namespace moe
