#pragma once
// A decode step's way into the MoE block in one launch: the block's input RMSNorm of the one
// residual row x, the normed row's quantization for the expert products, the router's product
// over it and the routing in the last thread block to finish. The bits of the two launches it
// replaces: quantize_normed() (activations.h), then matvec_route() (matvec.h) of float router
// rows over the normed row. Each thread block norms the whole row for itself (a few kilobytes
// read from L2) instead of waiting for a launch that norms it once.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "ops/cuda/route_target.h"

namespace moe::cuda {

struct NormRoute {
  const float* x = nullptr;     // the residual row [width]
  const float* norm = nullptr;  // the RMSNorm's weights [width]
  float eps = 0;
  int64_t width = 0;
  float* u = nullptr;  // out: the normed row [width]
  // out: the normed row quantized, Q8_0 or (k_quant) Q8_K, laid out as ActivationBuffer's
  // one-token rows (qs [width], scales [width / block], sums [width / 16]: Q8_K only).
  int8_t* qs = nullptr;
  float* scales = nullptr;
  int* sums = nullptr;
  bool k_quant = false;
  const float* router = nullptr;  // F32 rows, row_stride bytes apart (16-byte aligned)
  size_t row_stride = 0;
  int64_t rows = 0;               // the route's experts (and the shared expert's gate row)
  float* logits = nullptr;        // out: [rows]
  RouteTarget route{};            // as matvec_route(): its counter zero, left zero
};

// Whether a router of `rows` float rows of `width` values routing as `route` fits the fused
// kernel (at most 1024 rows and 8192 values, rows of whole 8-value tasks, matvec_route()'s
// limits on the route); the caller runs the separate launches otherwise.
bool fits_norm_route(int64_t rows, int64_t width, const RouteTarget& route);

// cudaErrorInvalidValue where !fits_norm_route() or a pointer is missing or misaligned.
cudaError_t norm_route(const NormRoute& a, cudaStream_t stream);

}  // namespace moe::cuda
