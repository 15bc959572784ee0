// Run-time choice of the attention kernel (compiled without SIMD flags).
#include "ops/cpu/attend.h"

#include <algorithm>

namespace moe {

AttendFn attend_kernel(SimdLevel level) {
  switch (std::min(level, best_simd_level())) {
    case SimdLevel::Avx512: return attend_avx512();
    case SimdLevel::Avx2: return attend_avx2();
    case SimdLevel::Scalar: break;
  }
  return attend_scalar();
}

}  // namespace moe
