#pragma once
// Turns a failed CUDA runtime call into moe::Error with the call, file and line.
// (The formatting lives in a .cpp: nvcc's front end cannot compile fmt's compile-time format
// checks, so .cu files keep to kernels and launches.)
#include <cuda_runtime.h>

namespace moe::cuda {
[[noreturn]] void check_failed(cudaError_t err, const char* call, const char* file, int line);
}  // namespace moe::cuda

#define MOE_CUDA_CHECK(call)                                                      \
  do {                                                                            \
    const cudaError_t moe_err_ = (call);                                          \
    if (moe_err_ != cudaSuccess) ::moe::cuda::check_failed(moe_err_, #call, __FILE__, __LINE__); \
  } while (0)
