#pragma once
// GGUF metadata values, viewed in place in the mapped file (nothing is copied until asked).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moe::gguf {

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
constexpr uint32_t kValueTypeCount = 13;

std::string_view value_type_name(ValueType type);
// Bytes of one scalar of this type; 0 for String and Array (variable length).
size_t scalar_size(ValueType type);
bool is_integer(ValueType type);

// A validated value inside a GGUF file. For arrays, element_type() and size() describe the
// elements; scalars have size() == 1.
class Value {
 public:
  Value() = default;
  Value(ValueType type, ValueType element_type, uint64_t count, const std::byte* data)
      : type_(type), element_type_(element_type), count_(count), data_(data) {}

  ValueType type() const { return type_; }
  ValueType element_type() const { return type_ == ValueType::Array ? element_type_ : type_; }
  bool is_array() const { return type_ == ValueType::Array; }
  uint64_t size() const { return count_; }

  // Scalars. Integers convert between widths when the value fits; otherwise these throw
  // moe::Error (the caller adds the key to the message).
  int64_t to_int() const;
  uint64_t to_uint() const;
  double to_double() const;  // any integer or float type
  bool to_bool() const;
  std::string_view to_string() const;

  // Arrays (copies): numbers converted to T, strings as views into the file.
  std::vector<int64_t> to_ints() const;
  std::vector<double> to_doubles() const;
  std::vector<std::string_view> to_strings() const;

  // A short human-readable rendering; arrays longer than max_items are elided.
  std::string to_display(size_t max_items = 8) const;

 private:
  ValueType type_ = ValueType::U8;
  ValueType element_type_ = ValueType::U8;
  uint64_t count_ = 0;
  const std::byte* data_ = nullptr;  // the scalar, or the first array element
};

}  // namespace moe::gguf
