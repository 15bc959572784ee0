// Row conversions for the simple formats and the size-checking front door. The K-quant
// (Q4_K/Q5_K/Q6_K) quantizers and decoders live in quantize_k.cpp.
#include "ops/cpu/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/bytes.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace moe {
namespace {

// Blocks are read and written through local copies (load_unaligned/store_unaligned): they
// sit at arbitrary byte offsets.

// The value with the largest magnitude, with its sign (ggml's Q4_0 / Q8_K convention).
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

void dequantize_row_q8_0(const std::byte* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const auto b = load_unaligned<BlockQ8_0>(x + i * sizeof(BlockQ8_0));
    const float d = f16_to_f32(b.d);
    for (int j = 0; j < kQK8_0; ++j) y[i * kQK8_0 + j] = d * float(b.qs[j]);
  }
}

void dequantize_row_q4_0(const std::byte* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const auto b = load_unaligned<BlockQ4_0>(x + i * sizeof(BlockQ4_0));
    const float d = f16_to_f32(b.d);
    float* out = y + i * kQK8_0;
    for (int j = 0; j < kQK8_0 / 2; ++j) {
      out[j] = d * float((b.qs[j] & 0x0F) - 8);
      out[j + 16] = d * float((b.qs[j] >> 4) - 8);
    }
  }
}

void dequantize_row_q8_k(const std::byte* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_unaligned<BlockQ8_K>(x + i * sizeof(BlockQ8_K));
    for (int j = 0; j < kQK_K; ++j) y[i * kQK_K + j] = b.d * float(b.qs[j]);
  }
}

}  // namespace

void quantize_row_q8_0(const float* x, std::byte* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float* in = x + i * kQK8_0;
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(in[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 b;
    b.d = f32_to_f16(d);
    // ggml multiplies by the reciprocal and rounds half away from zero (roundf).
    for (int j = 0; j < kQK8_0; ++j) b.qs[j] = int8_t(std::roundf(in[j] * id));
    store_unaligned(y + i * sizeof(BlockQ8_0), b);
  }
}

void quantize_row_q4_0(const float* x, std::byte* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float* in = x + i * kQK8_0;
    // d maps the largest-magnitude value to -8, the one level that has no positive twin.
    const float d = signed_absmax(in, kQK8_0) / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 b;
    b.d = f32_to_f16(d);
    for (int j = 0; j < kQK8_0 / 2; ++j) {
      // +8.5 then truncation toward zero: ggml's rounding, kept exactly.
      const int lo = std::min(15, int(int8_t(in[j] * id + 8.5f)));
      const int hi = std::min(15, int(int8_t(in[j + 16] * id + 8.5f)));
      b.qs[j] = uint8_t(lo | (hi << 4));
    }
    store_unaligned(y + i * sizeof(BlockQ4_0), b);
  }
}

void quantize_row_q8_k(const float* x, std::byte* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* in = x + i * kQK_K;
    BlockQ8_K b{};
    const float max = signed_absmax(in, kQK_K);
    if (max != 0.0f) {
      const float iscale = -127.0f / max;
      // lrintf rounds half to even, like ggml's nearest_int.
      for (int j = 0; j < kQK_K; ++j) b.qs[j] = int8_t(std::min(127L, std::lrintf(iscale * in[j])));
      for (int g = 0; g < kQK_K / 16; ++g) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) sum += b.qs[16 * g + j];
        b.bsums[g] = int16_t(sum);
      }
      b.d = 1.0f / iscale;
    }
    store_unaligned(y + i * sizeof(BlockQ8_K), b);
  }
}

bool is_quantizable(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q8_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return true;
    default: return false;
  }
}

namespace {

void check_sizes(const char* what, GgmlType type, size_t n_values, size_t n_bytes) {
  if (!is_quantizable(type)) fail("{}: type {} is not supported", what, type_name(type));
  const uint32_t bs = block_size(type);
  if (n_values % bs != 0) {
    fail("{}: {} values is not a multiple of the {} block size {}", what, n_values, type_name(type), bs);
  }
  if (n_bytes != row_bytes(type, n_values)) {
    fail("{}: {} values of {} need {} bytes, got {}", what, n_values, type_name(type), row_bytes(type, n_values),
         n_bytes);
  }
}

}  // namespace

void quantize_row(GgmlType type, std::span<const float> src, std::span<std::byte> dst, QuantEffort effort) {
  check_sizes("quantize_row", type, src.size(), dst.size());
  const float* x = src.data();
  std::byte* y = dst.data();
  const auto n = static_cast<int64_t>(src.size());
  switch (type) {
    case GgmlType::F32: std::memcpy(y, x, src.size_bytes()); break;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) store_unaligned(y + 2 * i, f32_to_f16(x[i]));
      break;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) store_unaligned(y + 2 * i, f32_to_bf16(x[i]));
      break;
    case GgmlType::Q8_0: quantize_row_q8_0(x, y, n); break;
    case GgmlType::Q4_0: quantize_row_q4_0(x, y, n); break;
    case GgmlType::Q8_K: quantize_row_q8_k(x, y, n); break;
    case GgmlType::Q4_K: quantize_row_q4_k(x, y, n, effort); break;
    case GgmlType::Q5_K: quantize_row_q5_k(x, y, n, effort); break;
    case GgmlType::Q6_K: quantize_row_q6_k(x, y, n, effort); break;
    default: MOE_ASSERT(!"unreachable: checked by check_sizes");
  }
}

void dequantize_row(GgmlType type, std::span<const std::byte> src, std::span<float> dst) {
  check_sizes("dequantize_row", type, dst.size(), src.size());
  const std::byte* x = src.data();
  float* y = dst.data();
  const auto n = static_cast<int64_t>(dst.size());
  switch (type) {
    case GgmlType::F32: std::memcpy(y, x, src.size()); break;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(load_unaligned<f16>(x + 2 * i));
      break;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(load_unaligned<bf16>(x + 2 * i));
      break;
    case GgmlType::Q8_0: dequantize_row_q8_0(x, y, n); break;
    case GgmlType::Q4_0: dequantize_row_q4_0(x, y, n); break;
    case GgmlType::Q8_K: dequantize_row_q8_k(x, y, n); break;
    case GgmlType::Q4_K: dequantize_row_q4_k(x, y, n); break;
    case GgmlType::Q5_K: dequantize_row_q5_k(x, y, n); break;
    case GgmlType::Q6_K: dequantize_row_q6_k(x, y, n); break;
    default: MOE_ASSERT(!"unreachable: checked by check_sizes");
  }
}

}  // namespace moe
