// Run-time choice of the dot-product kernels. Compiled without SIMD flags: it only looks at
// cpu_features() and hands out pointers into the per-level files.
#include "ops/cpu/vec_dot.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

bool has_vec_dot(GgmlType type) { return vec_dot_scalar(type) != nullptr; }

GgmlType vec_dot_type(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: return GgmlType::F32;
    case GgmlType::Q8_0:
    case GgmlType::Q4_0: return GgmlType::Q8_0;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return GgmlType::Q8_K;
    default: fail("no CPU kernel for tensor type {}", type_name(type));
  }
}

SimdLevel vec_dot_level(SimdLevel level) {
  level = std::min(level, best_simd_level());
  // The AVX-512 kernels use VNNI (vpdpbusd / vpdpwssd); plain AVX-512F CPUs run AVX2.
  if (level == SimdLevel::Avx512 && !cpu_features().avx512_vnni) level = SimdLevel::Avx2;
  return level;
}

VecDotFn vec_dot_kernel(GgmlType type, SimdLevel level) {
  VecDotFn fn = nullptr;
  switch (vec_dot_level(level)) {
    case SimdLevel::Avx512: fn = vec_dot_avx512(type); break;
    case SimdLevel::Avx2: fn = vec_dot_avx2(type); break;
    case SimdLevel::Scalar: break;
  }
  if (!fn) fn = vec_dot_scalar(type);
  if (!fn) fail("no CPU kernel for tensor type {}", type_name(type));
  return fn;
}

GemmTileFn gemm_tile_kernel(GgmlType type, SimdLevel level) {
  return vec_dot_level(level) == SimdLevel::Avx512 ? gemm_tile_avx512(type) : nullptr;
}

}  // namespace moe
