#pragma once
// a . b with 16 independent partial sums reduced in a fixed tree: the compiler turns the lane
// loop into vector instructions of whatever width the file's flags allow, and the result is
// the same bits at every width and on every thread. Internal linkage on purpose: files built
// with different SIMD flags each keep their own copy.
namespace moe {
namespace {

constexpr int kLanes = 16;

inline float dot_lanes(const float* a, const float* b, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0] + tail;
}

}  // namespace
}  // namespace moe
