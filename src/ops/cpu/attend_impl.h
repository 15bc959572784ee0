#pragma once
// The attention kernel's body, included by one file per SIMD level. Everything here has
// internal linkage: the three copies are compiled with different flags and must not merge.
#include <algorithm>
#include <cmath>

#include "ops/cpu/attend.h"
#include "ops/cpu/dot_lanes.h"

namespace moe {
namespace {

void attend_impl(const AttendArgs& a) {
  const int hd = a.head_dim, group = a.group;
  const int64_t n = a.visible;
  for (int64_t p = 0; p < n; ++p) {
    const float* k = a.keys + size_t(p) * a.stride;  // read once for the whole group
    for (int h = 0; h < group; ++h) a.scores[size_t(h) * n + p] = dot_lanes(a.q + size_t(h) * hd, k, hd) * a.scale;
  }
  for (int h = 0; h < group; ++h) {
    float* s = a.scores + size_t(h) * n;
    const float max_score = *std::max_element(s, s + n);
    double sum = 0;  // double: the normaliser must not depend on rounding noise
    for (int64_t p = 0; p < n; ++p) sum += s[p] = std::exp(s[p] - max_score);
    const float inv = float(1.0 / sum);
    for (int64_t p = 0; p < n; ++p) s[p] *= inv;
  }
  std::fill(a.out, a.out + size_t(group) * hd, 0.0f);
  for (int64_t p = 0; p < n; ++p) {
    const float* v = a.values + size_t(p) * a.stride;
    for (int h = 0; h < group; ++h) {
      const float w = a.scores[size_t(h) * n + p];
      float* o = a.out + size_t(h) * hd;
      for (int i = 0; i < hd; ++i) o[i] += w * v[i];
    }
  }
}

}  // namespace
}  // namespace moe
