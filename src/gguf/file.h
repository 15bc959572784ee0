#pragma once
// One GGUF file (v2 or v3), mapped and validated before anything uses it.
//
// Validation covers every field a lying or truncated file could use to make us read out of
// bounds or allocate absurdly: magic, version, counts against the bytes left, string and array
// lengths, value and tensor type ids, tensor shapes against their byte size, data ranges inside
// the file, alignment, overlaps and duplicate names. Any failure throws one moe::Error that
// names the file and the field.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/ggml_type.h"
#include "core/mapped_file.h"
#include "gguf/value.h"

namespace moe::gguf {

constexpr uint32_t kDefaultAlignment = 32;
constexpr size_t kMaxDims = 4;

struct TensorInfo {
  std::string_view name;
  GgmlType type = GgmlType::F32;
  uint32_t n_dims = 0;
  std::array<int64_t, kMaxDims> ne{1, 1, 1, 1};  // ne[0] is the fastest-varying dimension
  uint64_t offset = 0;                          // relative to its file's data section
  uint64_t nbytes = 0;
  std::span<const std::byte> data;  // the bytes, in place in the mapping
  uint32_t file_index = 0;          // which shard of a split model holds it

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  uint64_t row_bytes() const { return moe::row_bytes(type, uint64_t(ne[0])); }
  std::string shape_string() const;  // "[2048, 151936]"
};

// Key/value metadata, in file order, with lookup by key.
class Metadata {
 public:
  void add(std::string_view key, Value value);
  const Value* find(std::string_view key) const;
  size_t size() const { return entries_.size(); }
  const std::vector<std::pair<std::string_view, Value>>& entries() const { return entries_; }

  // Typed getters; they throw moe::Error naming the key when it is missing or has the wrong type.
  const Value& require(std::string_view key) const;
  std::string_view get_string(std::string_view key) const;
  uint64_t get_uint(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_double(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  // The same with a default when the key is absent (still an error if present but mistyped).
  std::string_view get_string(std::string_view key, std::string_view fallback) const;
  uint64_t get_uint(std::string_view key, uint64_t fallback) const;
  double get_double(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;

  std::string source;  // file path, for error messages

 private:
  std::vector<std::pair<std::string_view, Value>> entries_;
  std::unordered_map<std::string_view, size_t> index_;
};

class File {
 public:
  // Maps (or reads, see MappedFile::Backing) and validates `path`. `file_index` is stored in
  // each TensorInfo.
  explicit File(const std::string& path, uint32_t file_index = 0,
                MappedFile::Backing backing = MappedFile::Backing::Mapped);
  // Validates an in-memory image (used by the fuzzer); `bytes` must outlive the File.
  File(std::span<const std::byte> bytes, const std::string& name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section
  uint64_t size() const { return bytes_.size(); }
  const Metadata& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  std::span<const std::byte> bytes() const { return bytes_; }
  const MappedFile* mapping() const { return mapping_.get(); }  // null for an in-memory image

 private:
  void parse(uint32_t file_index);

  std::string path_;
  std::unique_ptr<MappedFile> mapping_;
  std::span<const std::byte> bytes_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace moe::gguf
