#pragma once
// Writes GGUF v3 files: metadata in insertion order, tensors back to back, each aligned.
// Tensor data is produced on demand by a fill callback, so writing tens of GB needs no more
// memory than one tensor. Files are written to "PATH.tmp" and renamed when complete, so a
// failed write never leaves a half-written model under the final name.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/ggml_type.h"
#include "gguf/value.h"

namespace moe::gguf {

class Writer {
 public:
  using Fill = std::function<void(std::span<std::byte> out)>;

  // Scalars. Setting an existing key replaces its value in place.
  void set_u8(std::string_view key, uint8_t v);
  void set_i8(std::string_view key, int8_t v);
  void set_u16(std::string_view key, uint16_t v);
  void set_i16(std::string_view key, int16_t v);
  void set_u32(std::string_view key, uint32_t v);
  void set_i32(std::string_view key, int32_t v);
  void set_u64(std::string_view key, uint64_t v);
  void set_i64(std::string_view key, int64_t v);
  void set_f32(std::string_view key, float v);
  void set_f64(std::string_view key, double v);
  void set_bool(std::string_view key, bool v);
  void set_string(std::string_view key, std::string_view v);
  // Arrays.
  void set_array_i32(std::string_view key, std::span<const int32_t> v);
  void set_array_u32(std::string_view key, std::span<const uint32_t> v);
  void set_array_f32(std::string_view key, std::span<const float> v);
  void set_array_string(std::string_view key, std::span<const std::string> v);
  bool has(std::string_view key) const;
  void remove(std::string_view key);

  // shape[0] is the row length (fastest dimension). The fill callback receives exactly
  // row_bytes * rows bytes to write into. The data overload copies `data` now.
  void add_tensor(std::string_view name, GgmlType type, std::vector<int64_t> shape, Fill fill);
  void add_tensor(std::string_view name, GgmlType type, std::vector<int64_t> shape, std::span<const std::byte> data);
  void add_tensor_f32(std::string_view name, std::vector<int64_t> shape, std::span<const float> data);

  void set_alignment(uint32_t alignment);  // also writes general.alignment

  // One file.
  void write(const std::string& path) const;
  // A split set PREFIX-00001-of-0000N.gguf ...: metadata in the first shard, tensors spread in
  // order over n_shards files. Returns the first shard's path.
  std::string write_split(const std::string& prefix, uint32_t n_shards) const;
  // The whole file in memory (tests and fuzz corpora; small models only).
  std::vector<std::byte> to_bytes() const;

 private:
  struct Kv {
    std::string key;
    ValueType type;
    std::vector<std::byte> payload;  // encoded value, after the type id
  };
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    Fill fill;
  };
  void set(std::string_view key, ValueType type, std::vector<std::byte> payload);
  // Encodes header + metadata + directory for `tensors` (indices into tensors_) plus extra kvs.
  std::vector<std::byte> encode_header(std::span<const size_t> tensors, std::span<const Kv> kvs) const;
  void write_file(const std::string& path, std::span<const size_t> tensors, std::span<const Kv> kvs) const;

  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace moe::gguf
