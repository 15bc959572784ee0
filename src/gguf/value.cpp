#include "gguf/value.h"

#include <cstring>
#include <limits>

#include "core/bytes.h"
#include "core/error.h"

namespace moe::gguf {
namespace {


// Reads one integer scalar of type t as a wide signed/unsigned pair.
struct WideInt {
  bool negative;
  uint64_t magnitude;  // two's complement value when !negative; |v| otherwise
};

WideInt load_int(ValueType t, const std::byte* p) {
  auto sgn = [](int64_t v) { return WideInt{v < 0, v < 0 ? uint64_t(0) - uint64_t(v) : uint64_t(v)}; };
  switch (t) {
    case ValueType::U8: return {false, load_unaligned<uint8_t>(p)};
    case ValueType::I8: return sgn(load_unaligned<int8_t>(p));
    case ValueType::U16: return {false, load_unaligned<uint16_t>(p)};
    case ValueType::I16: return sgn(load_unaligned<int16_t>(p));
    case ValueType::U32: return {false, load_unaligned<uint32_t>(p)};
    case ValueType::I32: return sgn(load_unaligned<int32_t>(p));
    case ValueType::U64: return {false, load_unaligned<uint64_t>(p)};
    case ValueType::I64: return sgn(load_unaligned<int64_t>(p));
    case ValueType::Bool: return {false, uint64_t(load_unaligned<uint8_t>(p) != 0)};
    default: fail("expected an integer, found {}", value_type_name(t));
  }
}

double load_double(ValueType t, const std::byte* p) {
  if (t == ValueType::F32) return load_unaligned<float>(p);
  if (t == ValueType::F64) return load_unaligned<double>(p);
  const WideInt w = load_int(t, p);
  return w.negative ? -double(w.magnitude) : double(w.magnitude);
}

int64_t to_int64(ValueType t, const std::byte* p) {
  const WideInt w = load_int(t, p);
  if (!w.negative && w.magnitude > uint64_t(std::numeric_limits<int64_t>::max())) fail("integer {} too large", w.magnitude);
  return w.negative ? int64_t(0 - w.magnitude) : int64_t(w.magnitude);
}

std::string_view load_string(const std::byte* p) {
  const uint64_t n = load_unaligned<uint64_t>(p);
  return {reinterpret_cast<const char*>(p + 8), size_t(n)};
}

}  // namespace

std::string_view value_type_name(ValueType type) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(type);
  return i < kValueTypeCount ? kNames[i] : "unknown";
}

size_t scalar_size(ValueType type) {
  switch (type) {
    case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    case ValueType::String: case ValueType::Array: return 0;
  }
  return 0;
}

bool is_integer(ValueType type) {
  switch (type) {
    case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
    case ValueType::U32: case ValueType::I32: case ValueType::U64: case ValueType::I64: return true;
    default: return false;
  }
}

int64_t Value::to_int() const {
  if (is_array() || !is_integer(type_)) fail("expected an integer, found {}", value_type_name(type_));
  return to_int64(type_, data_);
}

uint64_t Value::to_uint() const {
  if (is_array() || !is_integer(type_)) fail("expected an integer, found {}", value_type_name(type_));
  const WideInt w = load_int(type_, data_);
  if (w.negative) fail("expected a non-negative integer, found -{}", w.magnitude);
  return w.magnitude;
}

double Value::to_double() const {
  if (is_array() || !(is_integer(type_) || type_ == ValueType::F32 || type_ == ValueType::F64)) {
    fail("expected a number, found {}", value_type_name(type_));
  }
  return load_double(type_, data_);
}

bool Value::to_bool() const {
  if (type_ != ValueType::Bool) fail("expected a bool, found {}", value_type_name(type_));
  return load_unaligned<uint8_t>(data_) != 0;
}

std::string_view Value::to_string() const {
  if (type_ != ValueType::String) fail("expected a string, found {}", value_type_name(type_));
  return load_string(data_);
}

std::vector<int64_t> Value::to_ints() const {
  if (!is_array() || !is_integer(element_type_)) fail("expected an array of integers");
  std::vector<int64_t> out(count_);
  const size_t stride = scalar_size(element_type_);
  for (uint64_t i = 0; i < count_; ++i) out[i] = to_int64(element_type_, data_ + i * stride);
  return out;
}

std::vector<double> Value::to_doubles() const {
  const bool numeric = is_integer(element_type_) || element_type_ == ValueType::F32 || element_type_ == ValueType::F64;
  if (!is_array() || !numeric) fail("expected an array of numbers");
  std::vector<double> out(count_);
  const size_t stride = scalar_size(element_type_);
  for (uint64_t i = 0; i < count_; ++i) out[i] = load_double(element_type_, data_ + i * stride);
  return out;
}

std::vector<std::string_view> Value::to_strings() const {
  if (!is_array() || element_type_ != ValueType::String) fail("expected an array of strings");
  std::vector<std::string_view> out;
  out.reserve(count_);
  const std::byte* p = data_;
  for (uint64_t i = 0; i < count_; ++i) {
    out.push_back(load_string(p));
    p += 8 + out.back().size();
  }
  return out;
}

std::string Value::to_display(size_t max_items) const {
  auto scalar = [](ValueType t, const std::byte* p) -> std::string {
    switch (t) {
      case ValueType::F32: return fmt::format("{}", load_unaligned<float>(p));
      case ValueType::F64: return fmt::format("{}", load_unaligned<double>(p));
      case ValueType::Bool: return load_unaligned<uint8_t>(p) ? "true" : "false";
      case ValueType::String: {
        const std::string_view s = load_string(p);
        constexpr size_t kMaxChars = 60;
        std::string out = "\"";
        for (char ch : s.substr(0, kMaxChars)) {
          if (ch == '\n') out += "\\n";
          else if (ch == '"' || ch == '\\') out += {'\\', ch};
          else out += ch;
        }
        out += s.size() > kMaxChars ? fmt::format("...\" ({} bytes)", s.size()) : "\"";
        return out;
      }
      default: {
        const WideInt w = load_int(t, p);
        return w.negative ? fmt::format("-{}", w.magnitude) : fmt::format("{}", w.magnitude);
      }
    }
  };
  if (!is_array()) return scalar(type_, data_);
  std::string out = "[";
  const std::byte* p = data_;
  for (uint64_t i = 0; i < count_ && i < max_items; ++i) {
    if (i) out += ", ";
    out += scalar(element_type_, p);
    p += element_type_ == ValueType::String ? 8 + load_string(p).size() : scalar_size(element_type_);
  }
  if (count_ > max_items) out += fmt::format(", ... ({} {})", count_, value_type_name(element_type_));
  return out + "]";
}

}  // namespace moe::gguf
