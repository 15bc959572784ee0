#pragma once
// Scalar reference conversions between f32 and the storage formats the kernels compute with:
// F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K and the activation format Q8_K.
//
// Dequantization is bit-exact with ggml's layouts. The Q8_0, Q4_0 and Q8_K quantizers follow
// ggml's reference rounding exactly (activations must quantize identically everywhere); the
// K-quant quantizers search scales and mins for the least squared error (ggml-like quality,
// not ggml's exact bits).
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/ggml_type.h"

namespace moe {

// Formats quantize_row / dequantize_row accept.
bool is_quantizable(GgmlType type);

// How hard the K-quant quantizers search for block scales. Best tries 21 (Q4_K/Q5_K) or 25
// (Q6_K) step sizes per sub-block and keeps the least-squares best; Fast tries only the
// natural one, about 20x quicker and slightly less accurate: for synthetic models, whose
// random weights gain nothing from the search. Other formats ignore it.
enum class QuantEffort { Best, Fast };

// Writes row_bytes(type, src.size()) bytes. Throws moe::Error if src.size() is not a multiple
// of the block size, if dst has the wrong size, or if the type is not supported.
void quantize_row(GgmlType type, std::span<const float> src, std::span<std::byte> dst,
                  QuantEffort effort = QuantEffort::Best);

// Reads row_bytes(type, dst.size()) bytes; same errors as quantize_row.
void dequantize_row(GgmlType type, std::span<const std::byte> src, std::span<float> dst);

// The per-format workers, for callers that have already checked sizes (n = values).
void quantize_row_q8_0(const float* x, std::byte* y, int64_t n);
void quantize_row_q4_0(const float* x, std::byte* y, int64_t n);
void quantize_row_q8_k(const float* x, std::byte* y, int64_t n);
void quantize_row_q4_k(const float* x, std::byte* y, int64_t n, QuantEffort effort = QuantEffort::Best);
void quantize_row_q5_k(const float* x, std::byte* y, int64_t n, QuantEffort effort = QuantEffort::Best);
void quantize_row_q6_k(const float* x, std::byte* y, int64_t n, QuantEffort effort = QuantEffort::Best);
void dequantize_row_q4_k(const std::byte* x, float* y, int64_t n);
void dequantize_row_q5_k(const std::byte* x, float* y, int64_t n);
void dequantize_row_q6_k(const std::byte* x, float* y, int64_t n);

}  // namespace moe
