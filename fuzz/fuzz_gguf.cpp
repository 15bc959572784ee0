// Feeds arbitrary bytes to the GGUF parser. Any input must either parse into a consistent
// directory or raise moe::Error; crashes, sanitizer reports, hangs and huge allocations are bugs.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "gguf/file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const moe::gguf::File file(bytes, "fuzz.gguf");
    // Touch everything a user of the file would: every value in every form, every tensor byte range.
    for (const auto& [key, value] : file.metadata().entries()) {
      (void)value.to_display();
      try {
        if (value.is_array()) {
          if (value.element_type() == moe::gguf::ValueType::String) (void)value.to_strings();
          else (void)value.to_doubles();
        } else if (value.type() == moe::gguf::ValueType::String) {
          (void)value.to_string();
        } else {
          (void)value.to_double();
        }
      } catch (const moe::Error&) {
      }
    }
    volatile uint8_t sink = 0;
    for (const auto& t : file.tensors()) {
      if (t.nbytes > 0) sink = sink ^ uint8_t(t.data.front()) ^ uint8_t(t.data.back());
    }
  } catch (const moe::Error&) {
  }
  return 0;
}
