#pragma once
// The tensor-core prefill attention kernel (attention_mma.cu), for attend() (attention.h).
#include <cstdint>

#include <cuda_runtime.h>

#include "ops/cuda/attention.h"

namespace moe::cuda {

// attend() for n query tokens on the tensor cores; cudaErrorNotSupported where this kernel does
// not apply (compute capability below 8.0, head_dim other than 64, 128 or 256, a group of query
// heads per kv head that does not divide 64, or a tile larger than the device's shared memory)
// and the caller takes the CUDA-core kernel.
cudaError_t attend_prefill_mma(const float* q, KvType type, const void* k, const void* v, const int32_t* pos, int n,
                               int n_head, int n_head_kv, int head_dim, float scale, float* out, cudaStream_t stream);

}  // namespace moe::cuda
