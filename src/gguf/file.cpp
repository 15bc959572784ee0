#include "gguf/file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/bytes.h"
#include "core/error.h"
#include "core/units.h"

namespace moe::gguf {
namespace {

// Smallest encodings, used to bound counts before anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;              // key length, 1-byte key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, n_dims, one dim, type, offset

// Reads little-endian fields from the file image, checking every read against the end.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::string& path) : bytes_(bytes), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }
  const std::byte* here() const { return bytes_.data() + pos_; }

  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    const T v = load_unaligned<T>(here());
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_string(std::string_view what) {
    const auto n = read<uint64_t>(what);
    if (n > remaining()) {
      fail("{}: {}: string length {} exceeds the {} bytes left in the file (truncated or corrupt)", path_, what, n,
           remaining());
    }
    std::string_view s(reinterpret_cast<const char*>(here()), size_t(n));
    pos_ += n;
    return s;
  }

  void skip(uint64_t n, std::string_view what) {
    need(n, what);
    pos_ += n;
  }

  void need(uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      fail("{}: {}: needs {} bytes at offset {} but the file ends at {} (truncated)", path_, what, n, pos_,
           bytes_.size());
    }
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

ValueType read_value_type(Cursor& c, const std::string& path, std::string_view what) {
  const auto id = c.read<uint32_t>(what);
  if (id >= kValueTypeCount) fail("{}: {}: unknown value type id {}", path, what, id);
  return static_cast<ValueType>(id);
}

// Validates one value (the cursor is at its payload) and returns a view of it.
Value read_value(Cursor& c, ValueType type, const std::string& path, const std::string& what) {
  if (type == ValueType::String) {
    const std::byte* start = c.here();
    c.read_string(what);
    return Value(type, type, 1, start);
  }
  if (type != ValueType::Array) {
    const std::byte* start = c.here();
    c.skip(scalar_size(type), what);
    return Value(type, type, 1, start);
  }
  const ValueType elem = read_value_type(c, path, what + " element type");
  if (elem == ValueType::Array) fail("{}: {}: arrays of arrays are not supported", path, what);
  const auto count = c.read<uint64_t>(what + " array length");
  const std::byte* start = c.here();
  if (elem == ValueType::String) {
    if (count > c.remaining() / 8) {
      fail("{}: {}: array of {} strings cannot fit in the {} bytes left in the file", path, what, count,
           c.remaining());
    }
    for (uint64_t i = 0; i < count; ++i) c.read_string(what);
  } else {
    const uint64_t size = scalar_size(elem);
    if (count > c.remaining() / size) {
      fail("{}: {}: array of {} {} values ({} bytes) exceeds the {} bytes left in the file", path, what, count,
           value_type_name(elem), count * 1.0 * size, c.remaining());
    }
    c.skip(count * size, what);
  }
  return Value(type, elem, count, start);
}

uint64_t align_up(uint64_t x, uint64_t alignment) { return (x + alignment - 1) / alignment * alignment; }

}  // namespace

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (uint32_t i = 0; i < n_dims; ++i) s += fmt::format("{}{}", i ? ", " : "", ne[i]);
  return s + "]";
}

void Metadata::add(std::string_view key, Value value) {
  index_.emplace(key, entries_.size());
  entries_.emplace_back(key, value);
}

const Value* Metadata::find(std::string_view key) const {
  const auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const Value& Metadata::require(std::string_view key) const {
  const Value* v = find(key);
  if (!v) fail("{}: missing metadata key '{}'", source, key);
  return *v;
}

// Runs a conversion and prefixes its error with the file and key.
template <typename F>
static auto with_key(const std::string& source, std::string_view key, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    fail("{}: metadata key '{}': {}", source, key, e.what());
  }
}

std::string_view Metadata::get_string(std::string_view key) const {
  return with_key(source, key, [&] { return require(key).to_string(); });
}
uint64_t Metadata::get_uint(std::string_view key) const {
  return with_key(source, key, [&] { return require(key).to_uint(); });
}
int64_t Metadata::get_int(std::string_view key) const {
  return with_key(source, key, [&] { return require(key).to_int(); });
}
double Metadata::get_double(std::string_view key) const {
  return with_key(source, key, [&] { return require(key).to_double(); });
}
bool Metadata::get_bool(std::string_view key) const {
  return with_key(source, key, [&] { return require(key).to_bool(); });
}
std::string_view Metadata::get_string(std::string_view key, std::string_view fallback) const {
  return find(key) ? get_string(key) : fallback;
}
uint64_t Metadata::get_uint(std::string_view key, uint64_t fallback) const {
  return find(key) ? get_uint(key) : fallback;
}
double Metadata::get_double(std::string_view key, double fallback) const {
  return find(key) ? get_double(key) : fallback;
}
bool Metadata::get_bool(std::string_view key, bool fallback) const { return find(key) ? get_bool(key) : fallback; }

File::File(const std::string& path, uint32_t file_index, MappedFile::Backing backing)
    : path_(path), mapping_(std::make_unique<MappedFile>(path, backing)), bytes_(mapping_->bytes()) {
  parse(file_index);
}

File::File(std::span<const std::byte> bytes, const std::string& name) : path_(name), bytes_(bytes) { parse(0); }

void File::parse(uint32_t file_index) {
  metadata_.source = path_;
  Cursor c(bytes_, path_);
  if (bytes_.size() < 4 || std::memcmp(bytes_.data(), "GGUF", 4) != 0) {
    fail("{}: not a GGUF file (the first 4 bytes are not 'GGUF')", path_);
  }
  c.skip(4, "magic");
  version_ = c.read<uint32_t>("version");
  if ((version_ & 0xFFFF) == 0 && version_ != 0) {
    fail("{}: version field 0x{:08x} looks byte-swapped: big-endian GGUF files are not supported", path_, version_);
  }
  if (version_ == 1) fail("{}: GGUF version 1 is obsolete and not supported (convert the file again)", path_);
  if (version_ != 2 && version_ != 3) fail("{}: unsupported GGUF version {} (supported: 2, 3)", path_, version_);

  const auto n_tensors = c.read<uint64_t>("tensor count");
  const auto n_kv = c.read<uint64_t>("metadata count");
  if (n_kv > c.remaining() / kMinKvBytes) {
    fail("{}: metadata count {} is impossible for a file of {} bytes", path_, n_kv, bytes_.size());
  }
  if (n_tensors > c.remaining() / kMinTensorInfoBytes) {
    fail("{}: tensor count {} is impossible for a file of {} bytes", path_, n_tensors, bytes_.size());
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string where = fmt::format("metadata entry {}", i);
    const std::string_view key = c.read_string(where + " key");
    if (key.empty()) fail("{}: {}: empty key", path_, where);
    const std::string what = fmt::format("metadata key '{}'", key);
    if (metadata_.find(key)) fail("{}: {} appears twice", path_, what);
    const ValueType type = read_value_type(c, path_, what + " type");
    metadata_.add(key, read_value(c, type, path_, what));
  }

  if (const Value* a = metadata_.find("general.alignment")) {
    if (a->type() != ValueType::U32) {
      fail("{}: metadata key 'general.alignment' must be u32, found {}", path_, value_type_name(a->type()));
    }
    const uint64_t align = a->to_uint();
    if (align == 0 || (align & (align - 1)) != 0) {
      fail("{}: metadata key 'general.alignment' = {} is not a power of two", path_, align);
    }
    alignment_ = uint32_t(align);
  }

  tensors_.reserve(n_tensors);
  std::unordered_set<std::string_view> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.file_index = file_index;
    t.name = c.read_string(fmt::format("tensor {} name", i));
    if (t.name.empty()) fail("{}: tensor {} has an empty name", path_, i);
    const std::string what = fmt::format("tensor {}", t.name);
    if (!names.insert(t.name).second) fail("{}: {} appears twice", path_, what);
    t.n_dims = c.read<uint32_t>(what + " dimension count");
    if (t.n_dims == 0 || t.n_dims > kMaxDims) {
      fail("{}: {}: {} dimensions (must be 1 to {})", path_, what, t.n_dims, kMaxDims);
    }
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      t.ne[d] = c.read<int64_t>(what + " shape");
      if (t.ne[d] <= 0) fail("{}: {}: dimension {} is {} (must be positive)", path_, what, d, t.ne[d]);
    }
    const auto type_id = c.read<uint32_t>(what + " type");
    const auto traits = type_traits(type_id);
    if (!traits) fail("{}: {}: unknown tensor type id {}", path_, what, type_id);
    t.type = static_cast<GgmlType>(type_id);
    t.offset = c.read<uint64_t>(what + " offset");

    // Element count and byte size, refusing overflow.
    uint64_t n = 1;
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      if (uint64_t(t.ne[d]) > uint64_t(std::numeric_limits<int64_t>::max()) / n) {
        fail("{}: {}: shape {} has more than 2^63 elements", path_, what, t.shape_string());
      }
      n *= uint64_t(t.ne[d]);
    }
    if (t.ne[0] % traits->block_size != 0) {
      fail("{}: {}: row length {} is not a multiple of the {} block size {}", path_, what, t.ne[0], traits->name,
           traits->block_size);
    }
    const uint64_t blocks = n / traits->block_size;
    if (blocks > std::numeric_limits<uint64_t>::max() / traits->type_size) {
      fail("{}: {}: shape {} is too large", path_, what, t.shape_string());
    }
    t.nbytes = blocks * traits->type_size;
    tensors_.push_back(t);
  }

  // The data section starts at the next alignment boundary after the tensor directory.
  data_offset_ = align_up(c.pos(), alignment_);
  if (n_tensors > 0 && data_offset_ > bytes_.size()) {
    fail("{}: the data section would start at offset {}, past the end of the file ({} bytes, truncated)", path_,
         data_offset_, bytes_.size());
  }
  const uint64_t data_size = bytes_.size() >= data_offset_ ? bytes_.size() - data_offset_ : 0;
  for (auto& t : tensors_) {
    if (t.offset % alignment_ != 0) {
      fail("{}: tensor {}: offset {} is not a multiple of the alignment {}", path_, t.name, t.offset, alignment_);
    }
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      fail("{}: tensor {}: data at offset {} ({} long) runs past the end of the file ({}, truncated or corrupt)",
           path_, t.name, format_bytes(t.offset), format_bytes(t.nbytes), format_bytes(bytes_.size()));
    }
    t.data = bytes_.subspan(data_offset_ + t.offset, t.nbytes);
  }
  // No two tensors may share bytes.
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1];
    if (prev.offset + prev.nbytes > by_offset[i]->offset) {
      fail("{}: tensors {} and {} overlap (offsets {} + {} bytes > {})", path_, prev.name, by_offset[i]->name,
           prev.offset, prev.nbytes, by_offset[i]->offset);
    }
  }
}

}  // namespace moe::gguf
