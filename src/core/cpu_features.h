#pragma once
// What the CPU can run, read once with cpuid/xgetbv, and which SIMD level the kernels use.
// The level can be lowered (never raised past the hardware) with MOE_SIMD=scalar|avx2|avx512
// or from tests, so every path is exercised on one machine.
#include <string>
#include <string_view>

namespace moe {

struct CpuFeatures {
  bool avx2 = false;  // with FMA and F16C
  bool avx512 = false;  // F, BW, VL, DQ
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool avx_vnni = false;
  std::string brand;
};

const CpuFeatures& cpu_features();

enum class SimdLevel { Scalar = 0, Avx2 = 1, Avx512 = 2 };

std::string_view simd_level_name(SimdLevel level);
SimdLevel best_simd_level();    // what the hardware supports
SimdLevel active_simd_level();  // what kernels dispatch to now
// Sets the active level; clamps to the hardware and returns what was set.
SimdLevel set_simd_level(SimdLevel level);

// Short description for logs: "AVX-512 (VNNI, BF16)".
std::string describe_cpu();

}  // namespace moe
