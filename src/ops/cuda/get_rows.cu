// Rows of a weight matrix to f32 (the embedding lookup), one block per row, one thread per
// value; each format's value formula is its CPU dequantizer's (ops/cpu/quantize*.cpp).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/block_fields.cuh"
#include "ops/cuda/ops.h"

namespace moe::cuda {
namespace {

__device__ float value(GgmlType type, const uint8_t* row, int64_t i) {
  switch (type) {
    case GgmlType::F32: return reinterpret_cast<const float*>(row)[i];
    case GgmlType::F16: return __half2float(reinterpret_cast<const __half*>(row)[i]);
    case GgmlType::BF16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(row)[i]);
    case GgmlType::Q8_0: {
      const uint8_t* b = row + (i / 32) * 34;
      return f16_at(b) * float(int8_t(b[2 + i % 32]));
    }
    case GgmlType::Q4_0: {
      const uint8_t* b = row + (i / 32) * 18;
      const int j = int(i % 32);
      return f16_at(b) * float(((b[2 + j % 16] >> (j < 16 ? 0 : 4)) & 0x0F) - 8);
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
      const bool q5 = type == GgmlType::Q5_K;
      const uint8_t* b = row + (i / 256) * (q5 ? 176 : 144);
      const int o = int(i % 256), s = o / 32, l = o % 32;
      int sc, m;
      k_scale(b + 4, s, sc, m);
      int q = (b[(q5 ? 48 : 16) + 32 * (o / 64) + l] >> ((o % 64) < 32 ? 0 : 4)) & 0x0F;
      if (q5) q += 16 * ((b[16 + l] >> s) & 1);
      // (d sc) q - dmin m with every product rounded, as the CPU dequantizer (no fused multiply-add)
      return __fsub_rn(__fmul_rn(__fmul_rn(f16_at(b), float(sc)), float(q)), __fmul_rn(f16_at(b + 2), float(m)));
    }
    case GgmlType::Q6_K: {
      const uint8_t* b = row + (i / 256) * 210;
      const int o = int(i % 256), h = o / 128, q = (o % 128) / 32, l = o % 32;
      const int lo = (b[64 * h + 32 * (q % 2) + l] >> (4 * (q / 2))) & 0x0F;
      const int hi = (b[128 + 32 * h + l] >> (2 * q)) & 3;
      return f16_at(b + 208) * float(int8_t(b[192 + 8 * h + l / 16 + 2 * q])) * float((lo | hi << 4) - 32);
    }
    default: return 0.0f;
  }
}

__global__ void get_rows_kernel(GgmlType type, const uint8_t* __restrict__ w, size_t row_stride, int64_t cols,
                                const int32_t* __restrict__ ids, float* __restrict__ out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const uint8_t* row = w + size_t(ids[blockIdx.x]) * row_stride;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[int64_t(blockIdx.x) * cols + i] = value(type, row, i);
}

}  // namespace

cudaError_t get_rows(GgmlType type, const void* w, size_t row_stride, int64_t cols, const int32_t* ids, int n,
                     float* out, cudaStream_t stream) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0:
    case GgmlType::Q4_0: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K: break;
    default: return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  launch(get_rows_kernel, unsigned(n), 256, 0, stream, type, static_cast<const uint8_t*>(w), row_stride, cols, ids,
         out);
  return cudaGetLastError();
}

}  // namespace moe::cuda
