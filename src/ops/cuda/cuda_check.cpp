#include "ops/cuda/cuda_check.h"

#include "core/error.h"

namespace moe::cuda {

void check_failed(cudaError_t err, const char* call, const char* file, int line) {
  fail("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(err), cudaGetErrorString(err), call, file, line);
}

}  // namespace moe::cuda
