#pragma once
// Weights a decode step will read soon, requested into the GPU's L2 cache while the kernels
// before them wait on latency, not bandwidth. A decode layer alternates products that stream
// megabytes (the mixer's input and output projections, the router, the experts) with kernels
// that move kilobytes through a chain of dependent steps (the combine and norm, the delta-net
// step, the attention): during the latter the memory bus is idle. The request runs on a stream
// of its own, forked from the step's stream where the fetch should begin; nothing in the step
// waits for it (the step joins it at its end), so the product finds in L2 whatever has arrived
// and reads the rest as before. A hint only: results are the same bits with or without it
// (docs/cuda.md, "L2 prefetch").
#include <cstddef>
#include <cstdint>
#include <span>

#include <cuda_runtime.h>

namespace moe::cuda {

struct L2Range {
  const void* p = nullptr;
  size_t bytes = 0;
};
constexpr int kMaxL2Ranges = 4;

// Requests ranges (at most kMaxL2Ranges; each shortened to the whole 16-byte units inside it)
// into L2: one launch on `stream`, spread over thread blocks since one block's bulk requests
// move only a few hundred GB/s. A no-op on devices without bulk prefetch (compute capability
// below 9.0).
cudaError_t prefetch_l2(std::span<const L2Range> ranges, cudaStream_t stream);

}  // namespace moe::cuda
