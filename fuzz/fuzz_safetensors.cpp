// Feeds arbitrary bytes to the safetensors parser. Any input must either parse into a consistent
// tensor table or raise moe::Error; crashes, sanitizer reports, hangs and huge allocations are bugs.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const moe::formats::SafetensorsFile file(bytes, "fuzz.safetensors");
    // Touch what the converter would: every byte range (first and last element), converted.
    std::vector<float> one(1);
    for (const auto& t : file.tensors()) {
      if (t.n_elements() == 0) continue;
      const size_t elem = moe::formats::dtype_size(t.dtype);
      moe::formats::to_f32(t.dtype, t.data.first(elem), one);
      moe::formats::to_f32(t.dtype, t.data.last(elem), one);
      (void)t.shape_string();
    }
    for (const auto& [k, v] : file.metadata()) (void)(k.size() + v.size());
  } catch (const moe::Error&) {
  }
  return 0;
}
