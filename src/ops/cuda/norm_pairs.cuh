#pragma once
// A row's RMSNorm weights as the kernels that norm a whole row with one thread block read them
// (the norm + quantize kernels of activations.cu; the router that norms its input, norm_route.cu).
#include <cstdint>

namespace moe::cuda {

// A thread of a kernel that norms a row with a whole block takes the pairs of values p = tid,
// tid + threads, ... (values 2p and 2p + 1: one 8-byte load a row). The first kHeldPairs pairs' norm weights
// are loaded before the kernel waits for the previous one (they are constants): in a decode
// step they come from HBM, and later they would be a memory latency on the kernel's critical
// path. kHeldPairs covers rows of 4096 values in a decode block (1024 threads).
constexpr int kHeldPairs = 2;

struct HeldWeights {
  float2 v[kHeldPairs];
  __device__ HeldWeights(const float* w, int64_t width, int tid, int threads) {
#pragma unroll
    for (int j = 0; j < kHeldPairs; ++j) {
      const int64_t p = tid + int64_t(j) * threads;
      v[j] = 2 * p < width ? reinterpret_cast<const float2*>(w)[p] : float2{};
    }
  }
};

// Calls f(pair p, weights of the pair) for this thread's pairs of a row of `width` values.
template <typename F>
__device__ inline void for_pairs(int64_t width, int tid, int threads, const HeldWeights& held, const float* w, F&& f) {
#pragma unroll
  for (int j = 0; j < kHeldPairs; ++j) {
    const int64_t p = tid + int64_t(j) * threads;
    if (2 * p < width) f(p, held.v[j]);
  }
  for (int64_t p = tid + int64_t(kHeldPairs) * threads; 2 * p < width; p += threads) {
    f(p, reinterpret_cast<const float2*>(w)[p]);
  }
}

}  // namespace moe::cuda
