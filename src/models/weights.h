#pragma once
// Typed views of a model's tensors, checked against the shapes the hyperparameters imply.
// Matrices stay in the mapped file (used in place) unless their format has a faster
// interleaved layout on this CPU (ops/cpu/interleave.h): those are repacked at load into
// RepackedWeights. Small vectors (norms) are copied to f32.
#include <cstdint>
#include <string>
#include <vector>

#include "core/huge_page_buffer.h"
#include "gguf/reader.h"
#include "ops/cpu/matmul.h"

namespace moe {

// Stacked experts: expert e is the rows x cols matrix at data + e * expert_stride.
struct ExpertWeights {
  WeightView first;  // expert 0
  size_t expert_stride = 0;
  int n_expert = 0;
  WeightView expert(int e) const {
    WeightView w = first;
    w.data += size_t(e) * expert_stride;
    return w;
  }
};

// Tensors repacked at load, in anonymous huge-page memory; the model's views point into it,
// so it lives as long as the model. The file's pages of a repacked tensor are then dropped
// from the process (file mappings only): the model is never held twice.
class RepackedWeights {
 public:
  // An interleaved copy of `tensor` (n_matrices stacked rows x cols matrices in GGUF row
  // layout), or nullopt when its format has no interleaved layout on this CPU or its rows
  // are not whole groups. Returns the view of matrix 0; matrix e is e * matrix_bytes later.
  std::optional<WeightView> repack(const gguf::Reader& reader, const gguf::TensorInfo& tensor, int64_t rows,
                                   int64_t cols, int n_matrices);
  size_t bytes() const { return bytes_; }
  double seconds() const { return seconds_; }
  size_t n_tensors() const { return buffers_.size(); }

 private:
  std::vector<HugePageBuffer> buffers_;
  size_t bytes_ = 0;
  double seconds_ = 0;
};

class WeightLoader {
 public:
  // With `repacked`, matrices whose format has a faster layout are repacked into it.
  explicit WeightLoader(const gguf::Reader& reader, RepackedWeights* repacked = nullptr)
      : reader_(reader), repacked_(repacked) {}

  // A rows x cols matrix (GGUF shape {cols, rows}).
  WeightView matrix(const std::string& name, int64_t rows, int64_t cols) const;
  // n_expert matrices of rows x cols (GGUF shape {cols, rows, n_expert}).
  ExpertWeights experts(const std::string& name, int64_t rows, int64_t cols, int n_expert) const;
  // A vector of n values as f32 (any float type in the file).
  std::vector<float> vector(const std::string& name, int64_t n) const;
  // The same for a {n} or {n, 1} tensor (a 1-output linear layer, e.g. a gate).
  std::vector<float> gate_vector(const std::string& name, int64_t n) const;
  // Any small tensor of exactly this shape (GGUF order) as f32, row-major.
  std::vector<float> floats(const std::string& name, std::initializer_list<int64_t> shape) const;
  bool has(const std::string& name) const { return reader_.find_tensor(name) != nullptr; }

 private:
  const gguf::TensorInfo& checked(const std::string& name, std::initializer_list<int64_t> shape) const;
  const gguf::Reader& reader_;
  RepackedWeights* repacked_;
};

}  // namespace moe
