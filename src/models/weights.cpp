#include "models/weights.h"

#include "core/error.h"
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

WeightView WeightLoader::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const gguf::TensorInfo& t = checked(name, {cols, rows});
  if (!has_vec_dot(t.type)) fail("{}: tensor {} has type {}, which has no CPU kernels yet", reader_.path(), name, type_name(t.type));
  return WeightView::packed(t.type, rows, cols, t.data.data());
}

ExpertWeights WeightLoader::experts(const std::string& name, int64_t rows, int64_t cols, int n_expert) const {
  const gguf::TensorInfo& t = checked(name, {cols, rows, n_expert});
  if (!has_vec_dot(t.type)) fail("{}: tensor {} has type {}, which has no CPU kernels yet", reader_.path(), name, type_name(t.type));
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
