#include "core/cpu_features.h"

#include <atomic>
#include <cpuid.h>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace moe {
namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & bit_OSXSAVE;
  const bool fma = c & bit_FMA, f16c = c & bit_F16C, avx = c & bit_AVX;
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;        // XMM and YMM state
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;   // plus opmask and ZMM state
  unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
  if (__get_cpuid_count(7, 0, &a, &b7, &c7, &d7)) {
    unsigned b71, c71, d71;
    __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
  }
  f.avx2 = os_avx && avx && fma && f16c && (b7 & bit_AVX2);
  f.avx512 = f.avx2 && os_avx512 && (b7 & bit_AVX512F) && (b7 & bit_AVX512BW) && (b7 & bit_AVX512VL) &&
             (b7 & bit_AVX512DQ);
  f.avx512_vnni = f.avx512 && (c7 & bit_AVX512VNNI);
  f.avx512_bf16 = f.avx512 && (a71 & bit_AVX512BF16);
  f.avx_vnni = f.avx2 && (a71 & bit_AVXVNNI);

  unsigned brand[12] = {};
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
    }
    char text[49] = {};
    std::memcpy(text, brand, 48);
    f.brand = text;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  }
  return f;
}

SimdLevel level_from_env(SimdLevel best) {
  const char* env = std::getenv("MOE_SIMD");
  if (!env) return best;
  const std::string_view v = env;
  SimdLevel wanted = best;
  if (v == "scalar") wanted = SimdLevel::Scalar;
  else if (v == "avx2") wanted = SimdLevel::Avx2;
  else if (v == "avx512") wanted = SimdLevel::Avx512;
  else fail("MOE_SIMD='{}': expected scalar, avx2 or avx512", v);
  return wanted < best ? wanted : best;
}

std::atomic<int>& active_level() {
  static std::atomic<int> level{static_cast<int>(level_from_env(best_simd_level()))};
  return level;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string_view simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Scalar: return "scalar";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Avx512: return "avx512";
  }
  return "?";
}

SimdLevel best_simd_level() {
  const auto& f = cpu_features();
  return f.avx512 ? SimdLevel::Avx512 : f.avx2 ? SimdLevel::Avx2 : SimdLevel::Scalar;
}

SimdLevel active_simd_level() { return static_cast<SimdLevel>(active_level().load(std::memory_order_relaxed)); }

SimdLevel set_simd_level(SimdLevel level) {
  const SimdLevel clamped = level < best_simd_level() ? level : best_simd_level();
  active_level().store(static_cast<int>(clamped), std::memory_order_relaxed);
  return clamped;
}

std::string describe_cpu() {
  const auto& f = cpu_features();
  std::string extras;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!extras.empty()) extras += ", ";
    extras += name;
  };
  add(f.avx512_vnni, "VNNI");
  add(f.avx512_bf16, "BF16");
  add(!f.avx512 && f.avx_vnni, "AVX-VNNI");
  const char* base = f.avx512 ? "AVX-512" : f.avx2 ? "AVX2" : "no AVX2";
  return fmt::format("{}{}{}{}", base, extras.empty() ? "" : " (", extras, extras.empty() ? "" : ")");
}

}  // namespace moe
