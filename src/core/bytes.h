#pragma once
// Reading and writing values at arbitrary byte offsets (file images, packed quant blocks):
// through memcpy, which compiles to one plain load and is defined for any alignment.
// (Not for the SIMD kernel files: see ops/cpu/simd_common.h.)
#include <cstddef>
#include <cstring>
#include <type_traits>

namespace moe {

template <typename T>
  requires std::is_trivially_copyable_v<T>
T load_unaligned(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
  requires std::is_trivially_copyable_v<T>
void store_unaligned(std::byte* p, const T& v) {
  std::memcpy(p, &v, sizeof(T));
}

}  // namespace moe
