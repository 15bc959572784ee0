#include "gguf/writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "gguf/file.h"
#include "gguf/reader.h"

namespace moe::gguf {
namespace {

class Encoder {
 public:
  template <typename T>
  void put(T v) {
    append(&v, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    append(s.data(), s.size());
  }
  void append(const void* p, size_t n) {
    const size_t at = out.size();
    out.resize(at + n);
    if (n) std::memcpy(out.data() + at, p, n);
  }
  std::vector<std::byte> out;
};

template <typename T>
std::vector<std::byte> encode_scalar(T v) {
  Encoder e;
  e.put(v);
  return std::move(e.out);
}

template <typename T>
std::vector<std::byte> encode_array(ValueType elem, std::span<const T> v) {
  Encoder e;
  e.put<uint32_t>(static_cast<uint32_t>(elem));
  e.put<uint64_t>(v.size());
  for (const T& x : v) e.put(x);
  return std::move(e.out);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

void Writer::set(std::string_view key, ValueType type, std::vector<std::byte> payload) {
  if (key.empty()) fail("gguf writer: empty metadata key");
  for (auto& kv : kvs_) {
    if (kv.key == key) {
      kv.type = type;
      kv.payload = std::move(payload);
      return;
    }
  }
  kvs_.push_back({std::string(key), type, std::move(payload)});
}

void Writer::set_u8(std::string_view k, uint8_t v) { set(k, ValueType::U8, encode_scalar(v)); }
void Writer::set_i8(std::string_view k, int8_t v) { set(k, ValueType::I8, encode_scalar(v)); }
void Writer::set_u16(std::string_view k, uint16_t v) { set(k, ValueType::U16, encode_scalar(v)); }
void Writer::set_i16(std::string_view k, int16_t v) { set(k, ValueType::I16, encode_scalar(v)); }
void Writer::set_u32(std::string_view k, uint32_t v) { set(k, ValueType::U32, encode_scalar(v)); }
void Writer::set_i32(std::string_view k, int32_t v) { set(k, ValueType::I32, encode_scalar(v)); }
void Writer::set_u64(std::string_view k, uint64_t v) { set(k, ValueType::U64, encode_scalar(v)); }
void Writer::set_i64(std::string_view k, int64_t v) { set(k, ValueType::I64, encode_scalar(v)); }
void Writer::set_f32(std::string_view k, float v) { set(k, ValueType::F32, encode_scalar(v)); }
void Writer::set_f64(std::string_view k, double v) { set(k, ValueType::F64, encode_scalar(v)); }
void Writer::set_bool(std::string_view k, bool v) { set(k, ValueType::Bool, encode_scalar(uint8_t(v ? 1 : 0))); }
void Writer::set_string(std::string_view k, std::string_view v) {
  Encoder e;
  e.put_string(v);
  set(k, ValueType::String, std::move(e.out));
}
void Writer::set_array_i32(std::string_view k, std::span<const int32_t> v) {
  set(k, ValueType::Array, encode_array(ValueType::I32, v));
}
void Writer::set_array_u32(std::string_view k, std::span<const uint32_t> v) {
  set(k, ValueType::Array, encode_array(ValueType::U32, v));
}
void Writer::set_array_f32(std::string_view k, std::span<const float> v) {
  set(k, ValueType::Array, encode_array(ValueType::F32, v));
}
void Writer::set_array_string(std::string_view k, std::span<const std::string> v) {
  Encoder e;
  e.put<uint32_t>(static_cast<uint32_t>(ValueType::String));
  e.put<uint64_t>(v.size());
  for (const auto& s : v) e.put_string(s);
  set(k, ValueType::Array, std::move(e.out));
}

bool Writer::has(std::string_view key) const {
  for (const auto& kv : kvs_) {
    if (kv.key == key) return true;
  }
  return false;
}

void Writer::remove(std::string_view key) {
  std::erase_if(kvs_, [&](const Kv& kv) { return kv.key == key; });
}

void Writer::set_alignment(uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) fail("gguf writer: alignment {} is not a power of two", alignment);
  alignment_ = alignment;
  set_u32("general.alignment", alignment);
}

void Writer::add_tensor(std::string_view name, GgmlType type, std::vector<int64_t> shape, Fill fill) {
  if (name.empty() || name.size() >= 64) fail("gguf writer: tensor name '{}' must be 1 to 63 bytes", name);
  if (shape.empty() || shape.size() > kMaxDims) fail("gguf writer: tensor {}: {} dimensions", name, shape.size());
  for (const auto& t : tensors_) {
    if (t.name == name) fail("gguf writer: tensor {} added twice", name);
  }
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0) fail("gguf writer: tensor {}: dimension {} is not positive", name, d);
    n *= uint64_t(d);
  }
  if (shape[0] % block_size(type) != 0) {
    fail("gguf writer: tensor {}: row length {} is not a multiple of the {} block size {}", name, shape[0],
         type_name(type), block_size(type));
  }
  const uint64_t nbytes = n / block_size(type) * type_size(type);
  tensors_.push_back({std::string(name), type, std::move(shape), nbytes, std::move(fill)});
}

void Writer::add_tensor(std::string_view name, GgmlType type, std::vector<int64_t> shape,
                        std::span<const std::byte> data) {
  auto copy = std::make_shared<std::vector<std::byte>>(data.begin(), data.end());
  add_tensor(name, type, std::move(shape), [copy, name = std::string(name)](std::span<std::byte> out) {
    if (out.size() != copy->size()) fail("gguf writer: tensor {}: {} bytes given, shape needs {}", name, copy->size(), out.size());
    std::memcpy(out.data(), copy->data(), out.size());
  });
}

void Writer::add_tensor_f32(std::string_view name, std::vector<int64_t> shape, std::span<const float> data) {
  add_tensor(name, GgmlType::F32, std::move(shape), std::as_bytes(data));
}

std::vector<std::byte> Writer::encode_header(std::span<const size_t> tensors, std::span<const Kv> extra) const {
  Encoder e;
  e.out.insert(e.out.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
  e.put<uint32_t>(3);
  e.put<uint64_t>(tensors.size());
  e.put<uint64_t>(kvs_.size() + extra.size());
  auto put_kv = [&](const Kv& kv) {
    e.put_string(kv.key);
    e.put<uint32_t>(static_cast<uint32_t>(kv.type));
    e.out.insert(e.out.end(), kv.payload.begin(), kv.payload.end());
  };
  for (const auto& kv : kvs_) put_kv(kv);
  for (const auto& kv : extra) put_kv(kv);
  uint64_t offset = 0;
  for (size_t i : tensors) {
    const Tensor& t = tensors_[i];
    e.put_string(t.name);
    e.put<uint32_t>(uint32_t(t.shape.size()));
    for (int64_t d : t.shape) e.put<int64_t>(d);
    e.put<uint32_t>(static_cast<uint32_t>(t.type));
    e.put<uint64_t>(offset);
    offset = align_up(offset + t.nbytes, alignment_);
  }
  e.out.resize(align_up(e.out.size(), alignment_), std::byte{0});
  return std::move(e.out);
}

void Writer::write_file(const std::string& path, std::span<const size_t> tensors, std::span<const Kv> kvs) const {
  const std::string tmp = path + ".tmp";
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(tmp.c_str(), "wb"));
  if (!f) fail("{}: cannot create: {}", tmp, std::strerror(errno));
  auto write = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f.get()) != n) {
      const int err = errno;
      f.reset();
      std::remove(tmp.c_str());
      fail("{}: write failed: {}", tmp, std::strerror(err));
    }
  };
  const auto header = encode_header(tensors, kvs);
  write(header.data(), header.size());
  std::vector<std::byte> buffer;
  const std::byte zeros[256] = {};
  for (size_t i : tensors) {
    const Tensor& t = tensors_[i];
    buffer.assign(t.nbytes, std::byte{0});
    try {
      t.fill(buffer);
    } catch (...) {
      f.reset();
      std::remove(tmp.c_str());
      throw;
    }
    write(buffer.data(), buffer.size());
    const uint64_t pad = align_up(t.nbytes, alignment_) - t.nbytes;
    for (uint64_t done = 0; done < pad; done += sizeof zeros) write(zeros, std::min<uint64_t>(sizeof zeros, pad - done));
  }
  if (std::fflush(f.get()) != 0) fail("{}: write failed: {}", tmp, std::strerror(errno));
  f.reset();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("{}: cannot rename to {}: {}", tmp, path, std::strerror(errno));
}

void Writer::write(const std::string& path) const {
  std::vector<size_t> all(tensors_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  write_file(path, all, {});
}

std::string Writer::write_split(const std::string& prefix, uint32_t n_shards) const {
  if (n_shards == 0 || n_shards > 99999) fail("gguf writer: {} shards", n_shards);
  auto split_kv = [](std::string key, ValueType type, std::vector<std::byte> payload) {
    return Kv{std::move(key), type, std::move(payload)};
  };
  for (uint32_t s = 0; s < n_shards; ++s) {
    std::vector<size_t> mine;
    const size_t begin = tensors_.size() * s / n_shards, end = tensors_.size() * (s + 1) / n_shards;
    for (size_t i = begin; i < end; ++i) mine.push_back(i);
    const Kv split[] = {
        split_kv("split.no", ValueType::U16, encode_scalar(uint16_t(s))),
        split_kv("split.count", ValueType::U16, encode_scalar(uint16_t(n_shards))),
        split_kv("split.tensors.count", ValueType::I32, encode_scalar(int32_t(tensors_.size()))),
    };
    if (s == 0) {
      write_file(split_path(prefix, s, n_shards), mine, split);
    } else {
      // Later shards carry only the split keys (and the alignment, which their layout uses).
      Writer shard;
      shard.alignment_ = alignment_;
      if (alignment_ != 32) shard.set_u32("general.alignment", alignment_);
      shard.tensors_ = tensors_;
      shard.write_file(split_path(prefix, s, n_shards), mine, split);
    }
  }
  return split_path(prefix, 0, n_shards);
}

std::vector<std::byte> Writer::to_bytes() const {
  std::vector<size_t> all(tensors_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  auto out = encode_header(all, {});
  for (const auto& t : tensors_) {
    const size_t at = out.size();
    out.resize(at + align_up(t.nbytes, alignment_), std::byte{0});
    t.fill(std::span(out).subspan(at, t.nbytes));
  }
  return out;
}

}  // namespace moe::gguf
