#pragma once
// Kernel launches with programmatic dependent launch (PDL, sm_90 and later). A decode step is
// some twenty kernels a layer that each run for a few microseconds; launched the ordinary way,
// each waits for the previous one to finish before its thread blocks are even scheduled, and
// that gap is a good part of its time. Launched with PDL, a kernel's blocks are scheduled while
// the previous kernel still runs and wait at its first instruction (wait_for_previous_kernels)
// until that kernel has finished and its writes are visible: the stream's order is kept, the
// scheduling latency is hidden. Every kernel of ops/cuda starts with
//   wait_for_previous_kernels(); allow_next_kernel();
// and is launched through launch(). CUDA graphs captured from the stream keep the edges.
#include <utility>

#include <cuda_runtime.h>

namespace moe::cuda {

// Blocks until the kernels before this one in the stream have completed and flushed their
// memory; nothing in a kernel may read or write before it. A no-op before sm_90.
__device__ __forceinline__ void wait_for_previous_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel in the stream be scheduled now (it still waits for this one to finish
// before it starts work). A no-op before sm_90.
__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// The current device's compute capability major version (0 where it cannot be read), asked
// once per device and thread: kernels choose their instructions by it on every launch.
int device_compute_major();

// Whether the current device takes programmatic launches (compute capability 9.0 or later).
inline bool device_has_pdl() { return device_compute_major() >= 9; }

// kernel<<<grid, block, shared_bytes, stream>>>(args...), programmatic where the device has it.
template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                   Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = device_has_pdl() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace moe::cuda
