#pragma once
// Helpers for GGUF tests: a temporary directory, a sample model writer, and a raw byte
// builder that can write any field with any (invalid) value.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "gguf/writer.h"

namespace moe::test {

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("moe-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// A small model-like file: a few metadata keys of every kind and tensors of several types.
inline gguf::Writer sample_writer() {
  gguf::Writer w;
  w.set_string("general.architecture", "qwen3moe");
  w.set_string("general.name", "sample");
  w.set_u32("qwen3moe.block_count", 2);
  w.set_u64("qwen3moe.context_length", 4096);
  w.set_f32("qwen3moe.attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_bool("tokenizer.ggml.add_bos_token", false);
  const std::vector<std::string> tokens = {"a", "b", "ab", "<|im_end|>"};
  w.set_array_string("tokenizer.ggml.tokens", tokens);
  const std::vector<int32_t> types = {1, 1, 1, 3};
  w.set_array_i32("tokenizer.ggml.token_type", types);
  std::vector<float> norm(64);
  for (size_t i = 0; i < norm.size(); ++i) norm[i] = float(i) * 0.5f;
  w.add_tensor_f32("output_norm.weight", {64}, norm);
  w.add_tensor("blk.0.ffn_up_exps.weight", GgmlType::Q8_0, {64, 3, 2}, [](std::span<std::byte> out) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = std::byte(i * 7 + 1);
  });
  w.add_tensor("token_embd.weight", GgmlType::F16, {32, 4}, [](std::span<std::byte> out) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = std::byte(i);
  });
  return w;
}

// Builds GGUF bytes field by field, without any validation.
class RawGguf {
 public:
  RawGguf& magic(const char* m = "GGUF") { return raw(m, 4); }
  RawGguf& u32(uint32_t v) { return raw(&v, 4); }
  RawGguf& u64(uint64_t v) { return raw(&v, 8); }
  RawGguf& i64(int64_t v) { return raw(&v, 8); }
  RawGguf& u8(uint8_t v) { return raw(&v, 1); }
  RawGguf& f32(float v) { return raw(&v, 4); }
  RawGguf& str(std::string_view s) {
    u64(s.size());
    return raw(s.data(), s.size());
  }
  RawGguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return magic().u32(version).u64(n_tensors).u64(n_kv);
  }
  RawGguf& kv_u32(std::string_view key, uint32_t v) { return str(key).u32(4).u32(v); }
  RawGguf& kv_string(std::string_view key, std::string_view v) { return str(key).u32(8).str(v); }
  RawGguf& tensor(std::string_view name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(uint32_t(ne.size()));
    for (int64_t d : ne) i64(d);
    return u32(type).u64(offset);
  }
  RawGguf& align(size_t alignment = 32) {
    bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, std::byte{0});
    return *this;
  }
  RawGguf& zeros(size_t n) {
    bytes.resize(bytes.size() + n, std::byte{0});
    return *this;
  }
  RawGguf& raw(const void* p, size_t n) {
    const size_t at = bytes.size();
    bytes.resize(at + n);
    std::memcpy(bytes.data() + at, p, n);
    return *this;
  }
  std::vector<std::byte> bytes;
};

}  // namespace moe::test
