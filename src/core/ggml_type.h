#pragma once
// Tensor element types as GGUF files number them (ggml's enum), with their block geometry.
// Every id a file may legally carry is known here, so a file using a format we cannot compute
// still loads for `inspect`; `is_computable` says which ones the kernels implement.
#include <cstdint>
#include <optional>
#include <string_view>

namespace moe {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
};

struct TypeTraits {
  std::string_view name;  // lower case, as llama.cpp prints it: "q8_0", "bf16"
  uint32_t block_size;    // elements per block
  uint32_t type_size;     // bytes per block
  bool computable;        // our kernels implement it
};

// Traits of a type id read from a file; std::nullopt for ids that no file may carry.
std::optional<TypeTraits> type_traits(uint32_t id);
const TypeTraits& traits(GgmlType type);  // for known-valid types

inline std::string_view type_name(GgmlType t) { return traits(t).name; }
inline uint32_t block_size(GgmlType t) { return traits(t).block_size; }
inline uint32_t type_size(GgmlType t) { return traits(t).type_size; }
inline bool is_computable(GgmlType t) { return traits(t).computable; }
// Bytes of one row of `n` elements; n must be a multiple of the block size.
inline uint64_t row_bytes(GgmlType t, uint64_t n) { return n / block_size(t) * type_size(t); }

// Parses a name such as "q4_k" or "Q8_0" (case-insensitive); nullopt if unknown.
std::optional<GgmlType> parse_type(std::string_view name);

}  // namespace moe
