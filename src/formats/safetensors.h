#pragma once
// One .safetensors file, mapped and validated before anything uses it.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {...}}),
// then the data area that the offsets are relative to. Validation covers what a lying or
// truncated file could use against us: the header length against the file size and a hard cap,
// well-formed JSON without duplicate names, known dtypes (F32, F16, BF16; others are refused by
// name), shape x dtype size == byte range, ranges inside the data area, and no holes or overlaps
// (the safetensors format requires the tensors to tile the data area exactly). Any failure throws
// one moe::Error naming the file and the tensor or field. Tensor data is never copied: each
// SafeTensor's span points into the mapping.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"

namespace moe::formats {

enum class SafeDType { F32, F16, BF16 };

std::string_view dtype_name(SafeDType dtype);
size_t dtype_size(SafeDType dtype);

// The safetensors reference implementation refuses headers above 100 MB; so do we, so that a
// lying length can never make us parse (or allocate for) gigabytes of "JSON".
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
constexpr size_t kMaxSafetensorsDims = 8;

struct SafeTensor {
  std::string name;
  SafeDType dtype = SafeDType::F32;
  std::vector<int64_t> shape;          // row-major as PyTorch has it: shape.back() is contiguous
  std::span<const std::byte> data;     // in place in the mapping; may be unaligned
  const std::string* file = nullptr;   // the path it came from, for error messages

  int64_t n_elements() const;
  // A 0-D tensor is one row of one element.
  int64_t row_length() const { return shape.empty() ? 1 : shape.back(); }
  int64_t n_rows() const;
  std::string shape_string() const;  // "[4, 512, 256]"
};

class SafetensorsFile {
 public:
  // Maps and validates `path`.
  explicit SafetensorsFile(const std::string& path);
  // Validates an in-memory image (the fuzzer); `bytes` must outlive the object.
  SafetensorsFile(std::span<const std::byte> bytes, const std::string& name);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In data-offset order.
  const std::vector<SafeTensor>& tensors() const { return tensors_; }
  const SafeTensor* find(std::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  void parse();

  std::string path_;
  std::unique_ptr<MappedFile> mapping_;
  std::span<const std::byte> bytes_;
  std::vector<SafeTensor> tensors_;
  std::unordered_map<std::string_view, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// Converts one contiguous run of elements to f32 (exact for all three dtypes).
void to_f32(SafeDType dtype, std::span<const std::byte> src, std::span<float> dst);

}  // namespace moe::formats
