#pragma once
// The inner loop of causal attention on the CPU: the query heads of one token that share a
// KV head (a GQA group) against the keys and values of every position they may see.
//
// The arithmetic is written once (attend_impl.h) in fixed 16-lane order and compiled three
// times, without SIMD flags and with AVX2 / AVX-512 flags but no FMA contraction: every
// level gives bit-identical results, the SIMD ones only faster.
#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"

namespace moe {

struct AttendArgs {
  const float* q = nullptr;  // [group][head_dim], already normed and rotated
  int group = 1;             // query heads sharing this KV head
  int head_dim = 0;
  const float* keys = nullptr;    // position p's key for this KV head at keys + p * stride
  const float* values = nullptr;  // likewise for values
  size_t stride = 0;              // floats between positions
  int64_t visible = 0;            // positions 0 .. visible - 1 are attended
  float scale = 1.0f;             // applied to q.k before the softmax
  float* out = nullptr;           // [group][head_dim]
  float* scores = nullptr;        // scratch, group * visible floats
};

using AttendFn = void (*)(const AttendArgs&);

// The kernel for a SIMD level (clamped to the hardware).
AttendFn attend_kernel(SimdLevel level);
inline AttendFn attend_kernel() { return attend_kernel(active_simd_level()); }

// Per-level instantiations (attend_scalar.cpp, attend_avx2.cpp, attend_avx512.cpp).
AttendFn attend_scalar();
AttendFn attend_avx2();
AttendFn attend_avx512();

}  // namespace moe
