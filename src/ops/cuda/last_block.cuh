#pragma once
// The thread block that finishes a shared piece of work last, found with a counter of finished
// blocks: how one launch both computes partial results over many blocks and combines them (the
// router product that routes, attention split over blocks).

namespace moe::cuda {

// Whether this block is the last of `count` to arrive at `counter` (device memory, zero before;
// the last block sets it back to zero for the next launch, which stream order puts after this
// one). Every thread of the block calls it; the writes every block made before its call are
// visible to the last block (read them through L2: __ldcg).
__device__ inline bool last_to_arrive(unsigned* counter, unsigned count) {
  __shared__ bool last;
  __threadfence();  // this block's writes are visible before it counts itself finished
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    last = atomicAdd(counter, 1u) == count - 1;
    if (last) *counter = 0;  // every block has counted itself
  }
  __syncthreads();
  return last;
}

}  // namespace moe::cuda
