// Scalar reference kernels: the definition the SIMD kernels are tested against, and the
// fallback on CPUs without AVX2. Integer formats sum each block exactly in int32 and apply
// the float scales once per block, as the SIMD kernels do, so the two differ only by the
// order of the float additions.
#include <cstring>

#include "core/bytes.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "ops/cpu/vec_dot.h"

namespace moe {
namespace {


// Weights and activations with one float per value (x is always f32).
template <typename W, float (*to_f32)(W)>
float dot_float(int64_t k, const std::byte* w, const float* x) {
  float sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += to_f32(load_unaligned<W>(w + i * sizeof(W))) * x[i];
  return sum;
}

float f32_identity(float v) { return v; }

float dot_q8_0(int64_t k, const std::byte* w, const std::byte* x) {
  float sum = 0;
  for (int64_t ib = 0; ib < k / kQK8_0; ++ib) {
    const auto bw = load_unaligned<BlockQ8_0>(w + ib * sizeof(BlockQ8_0));
    const auto bx = load_unaligned<BlockQ8_0>(x + ib * sizeof(BlockQ8_0));
    int isum = 0;
    for (int j = 0; j < kQK8_0; ++j) isum += int(bw.qs[j]) * int(bx.qs[j]);
    sum += float(isum) * (f16_to_f32(bw.d) * f16_to_f32(bx.d));
  }
  return sum;
}

float dot_q4_0(int64_t k, const std::byte* w, const std::byte* x) {
  float sum = 0;
  for (int64_t ib = 0; ib < k / kQK8_0; ++ib) {
    const auto bw = load_unaligned<BlockQ4_0>(w + ib * sizeof(BlockQ4_0));
    const auto bx = load_unaligned<BlockQ8_0>(x + ib * sizeof(BlockQ8_0));
    int isum = 0;
    for (int j = 0; j < kQK8_0 / 2; ++j) {
      isum += ((bw.qs[j] & 0x0F) - 8) * int(bx.qs[j]);
      isum += ((bw.qs[j] >> 4) - 8) * int(bx.qs[j + 16]);
    }
    sum += float(isum) * (f16_to_f32(bw.d) * f16_to_f32(bx.d));
  }
  return sum;
}

// Q4_K and Q5_K: sum = d * sum_j sc_j * (q . x)_j - dmin * sum_j m_j * (sum of x in j);
// the second term comes from the activations' bsums without touching the values.
template <bool kFiveBit>
float dot_q45_k(int64_t k, const std::byte* w, const std::byte* x) {
  using Block = std::conditional_t<kFiveBit, BlockQ5_K, BlockQ4_K>;
  float sum = 0;
  for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
    const auto bw = load_unaligned<Block>(w + ib * sizeof(Block));
    const auto bx = load_unaligned<BlockQ8_K>(x + ib * sizeof(BlockQ8_K));
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      unpack_k_scale(bw.scales, j, sc, m);
      const int g = j / 2, shift = 4 * (j % 2);
      int dot = 0;
      for (int l = 0; l < 32; ++l) {
        int q = (bw.qs[32 * g + l] >> shift) & 0x0F;
        if constexpr (kFiveBit) q += 16 * ((bw.qh[l] >> j) & 1);
        dot += q * int(bx.qs[32 * j + l]);
      }
      isum += int(sc) * dot;
      msum += int(m) * (bx.bsums[2 * j] + bx.bsums[2 * j + 1]);
    }
    sum += bx.d * f16_to_f32(bw.d) * float(isum) - bx.d * f16_to_f32(bw.dmin) * float(msum);
  }
  return sum;
}

float dot_q6_k(int64_t k, const std::byte* w, const std::byte* x) {
  float sum = 0;
  for (int64_t ib = 0; ib < k / kQK_K; ++ib) {
    const auto bw = load_unaligned<BlockQ6_K>(w + ib * sizeof(BlockQ6_K));
    const auto bx = load_unaligned<BlockQ8_K>(x + ib * sizeof(BlockQ8_K));
    int isum = 0;
    for (int i = 0; i < kQK_K; i += 16) {  // one signed scale per 16 values
      const int h = i / 128, r = i % 128;  // half, and offset inside it
      const int l0 = r % 32, run = r / 32;  // runs of 32 share ql bytes (nibble) and qh bytes (2 bits)
      int dot = 0;
      for (int l = l0; l < l0 + 16; ++l) {
        const uint8_t ql = bw.ql[64 * h + l + 32 * (run % 2)];
        const int lo = run < 2 ? ql & 0x0F : ql >> 4;
        const int hi = (bw.qh[32 * h + l] >> (2 * run)) & 3;
        dot += ((lo | (hi << 4)) - 32) * int(bx.qs[128 * h + 32 * run + l]);
      }
      isum += int(bw.scales[i / 16]) * dot;
    }
    sum += bx.d * f16_to_f32(bw.d) * float(isum);
  }
  return sum;
}

using DotOne = float (*)(int64_t, const std::byte*, const std::byte*);

template <DotOne kDot>
void per_token(int64_t k, const std::byte* w, const std::byte* x, size_t x_stride, int n_tok, float* out) {
  for (int t = 0; t < n_tok; ++t) out[t] = kDot(k, w, x + t * x_stride);
}

template <typename W, float (*to_f32)(W)>
float dot_float_bytes(int64_t k, const std::byte* w, const std::byte* x) {
  return dot_float<W, to_f32>(k, w, reinterpret_cast<const float*>(x));
}

}  // namespace

VecDotFn vec_dot_scalar(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return per_token<dot_float_bytes<float, f32_identity>>;
    case GgmlType::F16: return per_token<dot_float_bytes<f16, f16_to_f32>>;
    case GgmlType::BF16: return per_token<dot_float_bytes<bf16, bf16_to_f32>>;
    case GgmlType::Q8_0: return per_token<dot_q8_0>;
    case GgmlType::Q4_0: return per_token<dot_q4_0>;
    case GgmlType::Q4_K: return per_token<dot_q45_k<false>>;
    case GgmlType::Q5_K: return per_token<dot_q45_k<true>>;
    case GgmlType::Q6_K: return per_token<dot_q6_k>;
    default: return nullptr;
  }
}

}  // namespace moe
