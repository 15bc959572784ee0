// Decode-time products y = W x on the GPU, one warp per weight row.
//
// A row is cut into chunks of 8 values; lane l of the warp decodes chunks l, l + 32, ... so the
// 32 lanes read 256 consecutive values (one K-quant block, or eight 32-value blocks) together
// and the loads of a warp are contiguous. Each decoded chunk is multiplied with every token's
// 8 activations (f32, read through the read-only cache: they are shared by all rows), the
// lanes' partial sums are added with shuffles, and lane 0 writes the row's results.
//
// Formats as in core/quant_blocks.h (byte offsets repeated here: nvcc compiles this file
// without the CPU headers' inline helpers).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <utility>

#include "ops/cuda/matvec.h"

namespace moe::cuda {
namespace {

constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ float f16_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

// 8 bytes from a 2-byte aligned address.
__device__ __forceinline__ void bytes8_a2(const uint8_t* p, uint8_t (&b)[8]) {
  const auto* h = reinterpret_cast<const unsigned short*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const unsigned short v = h[i];
    b[2 * i] = uint8_t(v & 0xFF);
    b[2 * i + 1] = uint8_t(v >> 8);
  }
}

// 8 bytes from an 8-byte aligned address.
__device__ __forceinline__ void bytes8_a8(const uint8_t* p, uint8_t (&b)[8]) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    b[i] = uint8_t(v.x >> (8 * i));
    b[4 + i] = uint8_t(v.y >> (8 * i));
  }
}

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K block (12 packed bytes at p).
__device__ __forceinline__ void k_scale(const uint8_t* p, int j, float& sc, float& m) {
  if (j < 4) {
    sc = float(p[j] & 63);
    m = float(p[j + 4] & 63);
  } else {
    sc = float((p[j + 4] & 0x0F) | ((p[j - 4] >> 6) << 4));
    m = float((p[j + 4] >> 4) | ((p[j] >> 6) << 4));
  }
}

// Each format: decode chunk c (values 8c .. 8c + 7) of a row.
struct Q8_0 {
  static constexpr int kBlockBytes = 34;
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const uint8_t* b = row + (c / 4) * kBlockBytes;
    const float d = f16_at(b);
    uint8_t q[8];
    bytes8_a2(b + 2 + 8 * (c % 4), q);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = d * float(int8_t(q[i]));
  }
};

struct Q4_0 {  // values 0..15: low nibbles of qs[0..15], 16..31: high nibbles, minus 8
  static constexpr int kBlockBytes = 18;
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const uint8_t* b = row + (c / 4) * kBlockBytes;
    const float d = f16_at(b);
    const int j = c % 4;
    uint8_t q[8];
    bytes8_a2(b + 2 + 8 * (j % 2), q);
    const int shift = j < 2 ? 0 : 4;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = d * float(int((q[i] >> shift) & 0x0F) - 8);
  }
};

// Q4_K (144 bytes: d, dmin, scales[12], qs[128]) and Q5_K (176: d, dmin, scales[12], qh[32],
// qs[128]). Value o of a block: group g = o / 64 of 32 bytes, low nibbles for the first 32.
template <bool kQ5>
struct Q45_K {
  static constexpr int kBlockBytes = kQ5 ? 176 : 144;
  static constexpr int kQs = kQ5 ? 48 : 16;
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const uint8_t* b = row + (c / 32) * kBlockBytes;
    const int o = 8 * (c % 32), g = o / 64, s = o / 32, l = o % 32;
    float sc, m;
    k_scale(b + 4, s, sc, m);
    const float d = f16_at(b) * sc, off = f16_at(b + 2) * m;
    uint8_t q[8];
    bytes8_a8(b + kQs + 32 * g + l, q);
    const int shift = (o % 64) < 32 ? 0 : 4;
    uint8_t h[8] = {};
    if constexpr (kQ5) bytes8_a8(b + 16 + l, h);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      int value = (q[i] >> shift) & 0x0F;
      if constexpr (kQ5) value |= ((h[i] >> s) & 1) << 4;
      v[i] = d * float(value) - off;
    }
  }
};

// Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d): value o in half h = o / 128, quarter
// q of that half: low bits from ql (nibble q / 2 of byte l + 32 (q % 2)), high bits 2q..2q+1
// of qh[l], scale of the 16 values.
struct Q6_K {
  static constexpr int kBlockBytes = 210;
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const uint8_t* b = row + (c / 32) * kBlockBytes;
    const int o = 8 * (c % 32), h = o / 128, q = (o % 128) / 32, l = o % 32;
    const float d = f16_at(b + 208) * float(int8_t(b[192 + 8 * h + l / 16 + 2 * q]));
    uint8_t lo[8], hi[8];
    bytes8_a2(b + 64 * h + l + 32 * (q % 2), lo);
    bytes8_a2(b + 128 + 32 * h + l, hi);
    const int shift = 4 * (q / 2);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int value = ((lo[i] >> shift) & 0x0F) | (((hi[i] >> (2 * q)) & 3) << 4);
      v[i] = d * float(value - 32);
    }
  }
};

struct F32 {
  static constexpr int kBlockBytes = 4;
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const auto* p = reinterpret_cast<const float*>(row) + 8 * c;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = p[i];
  }
};

struct F16 {
  static constexpr int kBlockBytes = 2;
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const auto* p = reinterpret_cast<const __half*>(row) + 8 * c;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __half2float(p[i]);
  }
};

struct BF16 {
  static constexpr int kBlockBytes = 2;
  __device__ static void decode8(const uint8_t* row, int c, float (&v)[8]) {
    const auto* p = reinterpret_cast<const __nv_bfloat16*>(row) + 8 * c;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __bfloat162float(p[i]);
  }
};

template <typename Format, int NT>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    matvec_kernel(const uint8_t* __restrict__ w, size_t row_stride, int64_t rows, int64_t cols,
                  const float* __restrict__ x, float* __restrict__ y) {
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const uint8_t* wr = w + row * row_stride;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  const int chunks = int(cols / 8);
#pragma unroll 2
  for (int c = threadIdx.x; c < chunks; c += 32) {
    float v[8];
    Format::decode8(wr, c, v);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float4* xp = reinterpret_cast<const float4*>(x + t * cols + 8 * c);
      const float4 a = __ldg(xp), b = __ldg(xp + 1);
      acc[t] += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w + v[4] * b.x + v[5] * b.y + v[6] * b.z + v[7] * b.w;
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    float s = acc[t];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
    if (threadIdx.x == 0) y[t * rows + row] = s;
  }
}

template <typename Format>
cudaError_t launch_format(const void* w, size_t stride, int64_t rows, int64_t cols, const float* x, int n_tok, float* y,
                          cudaStream_t stream) {
  const dim3 block(32, kWarpsPerBlock);
  const dim3 grid(unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
  const auto* wb = static_cast<const uint8_t*>(w);
  // One instantiation per token count: the accumulators stay in registers.
  const bool launched = [&]<int... N>(std::integer_sequence<int, N...>) {
    return ((n_tok == N + 1 ? (matvec_kernel<Format, N + 1><<<grid, block, 0, stream>>>(wb, stride, rows, cols, x, y),
                               true)
                            : false) ||
            ...);
  }(std::make_integer_sequence<int, kMaxMatvecTokens>{});
  if (!launched) return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_matvec(GgmlType type, const void* w, size_t stride, int64_t rows, int64_t cols, const float* x,
                          int n_tok, float* y, cudaStream_t stream) {
  switch (type) {
    case GgmlType::Q8_0: return launch_format<Q8_0>(w, stride, rows, cols, x, n_tok, y, stream);
    case GgmlType::Q4_0: return launch_format<Q4_0>(w, stride, rows, cols, x, n_tok, y, stream);
    case GgmlType::Q4_K: return launch_format<Q45_K<false>>(w, stride, rows, cols, x, n_tok, y, stream);
    case GgmlType::Q5_K: return launch_format<Q45_K<true>>(w, stride, rows, cols, x, n_tok, y, stream);
    case GgmlType::Q6_K: return launch_format<Q6_K>(w, stride, rows, cols, x, n_tok, y, stream);
    case GgmlType::F32: return launch_format<F32>(w, stride, rows, cols, x, n_tok, y, stream);
    case GgmlType::F16: return launch_format<F16>(w, stride, rows, cols, x, n_tok, y, stream);
    case GgmlType::BF16: return launch_format<BF16>(w, stride, rows, cols, x, n_tok, y, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace moe::cuda
