#include "formats/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/ranges.h>

#include "core/bytes.h"
#include "core/error.h"
#include "core/fp16.h"
#include "formats/json_util.h"

namespace moe::formats {
namespace {

using json_util::Json;

struct DTypeEntry {
  std::string_view name;
  SafeDType dtype;
};
constexpr std::array kSupported = {DTypeEntry{"F32", SafeDType::F32}, DTypeEntry{"F16", SafeDType::F16},
                                   DTypeEntry{"BF16", SafeDType::BF16}};
// Dtypes the format defines that we refuse by name (rather than calling them unknown), so a user
// with an FP8 or integer checkpoint learns what the file holds.
constexpr std::array<std::string_view, 16> kKnownUnsupported = {
    "F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",
    "F6_E2M3", "F6_E3M2"};

SafeDType parse_dtype(const std::string& s, const std::string& path, const std::string& tensor) {
  for (const auto& e : kSupported) {
    if (e.name == s) return e.dtype;
  }
  if (std::find(kKnownUnsupported.begin(), kKnownUnsupported.end(), s) != kKnownUnsupported.end()) {
    fail("{}: tensor '{}': dtype {} is not supported (supported: F32, F16, BF16)", path, tensor, s);
  }
  fail("{}: tensor '{}': unknown dtype '{}' (supported: F32, F16, BF16)", path, tensor, s);
}

// Multiplies non-negative dimensions, failing instead of overflowing past `limit`.
uint64_t checked_elements(const std::vector<int64_t>& shape, uint64_t limit, const std::string& path,
                          const std::string& tensor) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d == 0) return 0;
    if (n > limit / uint64_t(d)) {
      fail("{}: tensor '{}': shape {} has more elements than the file has bytes", path, tensor, fmt::join(shape, "x"));
    }
    n *= uint64_t(d);
  }
  return n;
}

}  // namespace

std::string_view dtype_name(SafeDType dtype) {
  for (const auto& e : kSupported) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

size_t dtype_size(SafeDType dtype) { return dtype == SafeDType::F32 ? 4 : 2; }

int64_t SafeTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated at parse time: no overflow
  return n;
}

int64_t SafeTensor::n_rows() const { return row_length() == 0 ? 0 : n_elements() / row_length(); }

std::string SafeTensor::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

SafetensorsFile::SafetensorsFile(const std::string& path)
    : path_(path), mapping_(std::make_unique<MappedFile>(path)), bytes_(mapping_->bytes()) {
  parse();
}

SafetensorsFile::SafetensorsFile(std::span<const std::byte> bytes, const std::string& name)
    : path_(name), bytes_(bytes) {
  parse();
}

const SafeTensor* SafetensorsFile::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::parse() {
  if (bytes_.size() < 8) {
    fail("{}: not a safetensors file: {} bytes, too small for the 8-byte header length", path_, bytes_.size());
  }
  const auto header_len = load_unaligned<uint64_t>(bytes_.data());  // little-endian hosts only (x86-64)
  if (header_len > kMaxSafetensorsHeaderBytes) {
    fail("{}: header length {} exceeds the {} byte limit (corrupt or not a safetensors file)", path_, header_len,
         kMaxSafetensorsHeaderBytes);
  }
  if (header_len > bytes_.size() - 8) {
    fail("{}: header length {} runs past the end of the file ({} bytes; truncated?)", path_, header_len,
         bytes_.size());
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes_.data() + 8), size_t(header_len));
  // Depth 3 covers root -> tensor entry -> shape array; anything deeper is not a safetensors header.
  const Json header = json_util::parse(text, path_ + ": header", 3, /*reject_duplicate_top_keys=*/true);
  if (!header.is_object()) fail("{}: header is not a JSON object", path_);

  const std::span<const std::byte> data_area = bytes_.subspan(8 + header_len);
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  tensors_.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("{}: __metadata__ must be an object of strings", path_);
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail("{}: __metadata__ key '{}' must be a string, found {}", path_, k, v.dump());
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (name.empty()) fail("{}: a tensor has an empty name", path_);
    if (!entry.is_object()) fail("{}: tensor '{}': entry must be an object", path_, name);
    for (const auto& [field, _] : entry.items()) {
      if (field != "dtype" && field != "shape" && field != "data_offsets") {
        fail("{}: tensor '{}': unexpected field '{}'", path_, name, field);
      }
    }
    SafeTensor t;
    t.name = name;
    t.file = &path_;
    const std::string what = fmt::format("{}: tensor '{}'", path_, name);
    t.dtype = parse_dtype(json_util::get_string(entry, "dtype", what), path_, name);

    const Json& shape = json_util::require(entry, "shape", what);
    if (!shape.is_array()) fail("{}: 'shape' must be an array", what);
    if (shape.size() > kMaxSafetensorsDims) fail("{}: {} dimensions (at most {})", what, shape.size(), kMaxSafetensorsDims);
    for (const auto& d : shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX)) {
        fail("{}: shape entry {} is not a non-negative integer", what, d.dump());
      }
      t.shape.push_back(int64_t(d.get<uint64_t>()));
    }

    const Json& offsets = json_util::require(entry, "data_offsets", what);
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      fail("{}: 'data_offsets' must be [begin, end] with non-negative integers, found {}", what, offsets.dump());
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end) fail("{}: data_offsets [{}, {}] end before they begin", what, begin, end);
    if (end > data_area.size()) {
      fail("{}: data_offsets [{}, {}] run past the data area ({} bytes; truncated?)", what, begin, end,
           data_area.size());
    }
    const uint64_t n = checked_elements(t.shape, data_area.size(), path_, name);
    if (n * dtype_size(t.dtype) != end - begin) {
      fail("{}: shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", what, t.shape_string(),
           dtype_name(t.dtype), n * dtype_size(t.dtype), begin, end, end - begin);
    }
    t.data = data_area.subspan(begin, end - begin);
    ranges.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(t));
  }

  // The format requires tensors to tile the data area: sorted by offset, each starts where the
  // previous ended and the last ends at the end of the file. That rules out overlaps (two names
  // aliasing the same bytes) and unexplained bytes.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const auto& r : ranges) {
    const auto& name = tensors_[r.index].name;
    if (r.begin < expected) fail("{}: tensor '{}' at [{}, {}] overlaps the previous tensor (ends at {})", path_, name, r.begin, r.end, expected);
    if (r.begin > expected) fail("{}: tensor '{}' starts at {} but the previous tensor ends at {} (hole in the data area)", path_, name, r.begin, expected);
    expected = r.end;
  }
  if (expected != data_area.size()) {
    fail("{}: tensors end at data offset {} but the data area has {} bytes (trailing garbage or missing tensor)",
         path_, expected, data_area.size());
  }
  // Present tensors in file order (what a streaming reader wants) and index them by name.
  std::vector<SafeTensor> ordered;
  ordered.reserve(tensors_.size());
  for (const auto& r : ranges) ordered.push_back(std::move(tensors_[r.index]));
  tensors_ = std::move(ordered);
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace(tensors_[i].name, i);
}

void to_f32(SafeDType dtype, std::span<const std::byte> src, std::span<float> dst) {
  MOE_ASSERT(src.size() == dst.size() * dtype_size(dtype));
  switch (dtype) {
    case SafeDType::F32:
      std::memcpy(dst.data(), src.data(), src.size());
      break;
    case SafeDType::F16:
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = f16_to_f32({load_unaligned<uint16_t>(src.data() + 2 * i)});
      break;
    case SafeDType::BF16:
      for (size_t i = 0; i < dst.size(); ++i) dst[i] = bf16_to_f32({load_unaligned<uint16_t>(src.data() + 2 * i)});
      break;
  }
}

}  // namespace moe::formats
