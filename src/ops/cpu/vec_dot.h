#pragma once
// Dot products of one weight row with up to kMaxDotTokens activation rows.
//
// Each weight format is paired with the activation ("vec_dot") format its kernel reads:
//   Q8_0, Q4_0        -> Q8_0 activations (integer dot per 32-value block)
//   Q4_K, Q5_K, Q6_K  -> Q8_K activations (integer dot per 256-value super-block)
//   F32, F16, BF16    -> F32 activations
// A kernel decodes each weight block once and applies it to every activation row it was
// given, so a prefill reads the weights once per group of tokens. The arithmetic done for
// one token never depends on how many others share the call: a token's result is
// bit-identical whether it is computed alone or in a group.
//
// There is a scalar reference kernel for every format, and AVX2 and AVX-512 (VNNI) versions
// compiled with their own flags; vec_dot_kernel() picks one for the CPU at run time.
#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"
#include "core/ggml_type.h"

namespace moe {

constexpr int kMaxDotTokens = 4;

// out[t] = sum_i w[i] * x_t[i] for t < n_tok (1..kMaxDotTokens), where x_t starts at
// x + t * x_stride (bytes). k is the row length in values, a multiple of the formats' block
// sizes; w and x are rows in the weight format and in vec_dot_type(weight format).
using VecDotFn = void (*)(int64_t k, const std::byte* w, const std::byte* x, size_t x_stride, int n_tok,
                          float* out);

// The activation format paired with a weight format. Throws moe::Error for formats without
// kernels.
GgmlType vec_dot_type(GgmlType weight_type);

// True for the weight formats that have kernels.
bool has_vec_dot(GgmlType weight_type);

// The kernel for a weight format at a SIMD level (clamped to what this CPU can run: the
// AVX-512 kernels need VNNI and fall back to AVX2 without it). Throws moe::Error for formats
// without kernels.
VecDotFn vec_dot_kernel(GgmlType weight_type, SimdLevel level);
inline VecDotFn vec_dot_kernel(GgmlType weight_type) { return vec_dot_kernel(weight_type, active_simd_level()); }

// Tiles: out[r * kGemmTileTokens + t] = dot(row r, token t) for kGemmTileRows weight rows
// (w_stride bytes apart) and n_tok (1..kGemmTileTokens) activation rows, bit-identical to what
// the VecDotFn of the same format and level computes for each pair. Only where a tile pays (it
// shares work across rows and tokens: one token's included, whose activation blocks and scales
// it decodes once for four rows); nullptr elsewhere.
constexpr int kGemmTileRows = 4, kGemmTileTokens = 4;
using GemmTileFn = void (*)(int64_t k, const std::byte* w, size_t w_stride, const std::byte* x, size_t x_stride,
                            int n_tok, float* out);
GemmTileFn gemm_tile_kernel(GgmlType weight_type, SimdLevel level);
inline GemmTileFn gemm_tile_kernel(GgmlType weight_type) { return gemm_tile_kernel(weight_type, active_simd_level()); }
GemmTileFn gemm_tile_avx512(GgmlType weight_type);

// The SIMD level vec_dot_kernel(type, level) really runs (after clamping); for reports.
SimdLevel vec_dot_level(SimdLevel level);

// Per-level tables, defined in vec_dot_scalar.cpp / vec_dot_avx2.cpp / vec_dot_avx512.cpp.
// They return nullptr for formats they do not implement. Call the SIMD ones only on CPUs
// that have the features.
VecDotFn vec_dot_scalar(GgmlType weight_type);
VecDotFn vec_dot_avx2(GgmlType weight_type);
VecDotFn vec_dot_avx512(GgmlType weight_type);

}  // namespace moe
