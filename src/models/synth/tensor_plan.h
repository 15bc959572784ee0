#pragma once
// Which tensors a synthetic model has, their shapes, storage types and weight distributions.
//
// Storage types follow what llama-quantize produces (loosely, see docs/synth.md):
//   * 1-D norm weights and the MoE router (ffn_gate_inp) stay F32, as llama.cpp never
//     quantizes them.
//   * The LM head (output.weight, or token_embd when the embeddings are tied) is Q6_K when the
//     requested type is below 6 bits (q4_0, q4_k, q5_k), as llama-quantize does.
//   * With q4_k / q5_k (imitating Q4_K_M / Q5_K_M) attn_v and ffn_down(_exps) are Q6_K on
//     llama-quantize's "use_more_bits" layers: the first and last eighth of the stack and every
//     third layer in between.
//   * Everything else 2-D/3-D takes the requested type.
// A row length that is not a multiple of the chosen type's block falls back to Q8_0 (rows of
// 32) or else F16, and the fallback is reported.
#include <cstdint>
#include <functional>
#include <utility>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "models/synth/presets.h"
#include "models/synth/random_weights.h"

namespace moe::synth {

enum class TensorRole { Norm, Router, TokenEmbedding, Output, AttnV, FfnDown, Matrix };

struct PlannedTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> shape;  // ne order: shape[0] is the row length
  WeightRecipe recipe;
  bool outliers_apply = false;  // the row is n_embd wide and uses the outlier channels
  std::string note;             // non-empty when the type fell back for the block size
  // Where row r's random stream comes from, when not from this tensor's own row r: the legacy
  // fused ssm_in takes each row from the attn_qkv or attn_gate row it holds, so a file in
  // either layout is the same model.
  std::function<std::pair<std::string, uint64_t>(uint64_t row)> row_source;
};

struct TypeChoice {
  GgmlType type;
  std::string note;  // why it differs from the policy's choice, if it does
};

// llama-quantize's use_more_bits(i, n).
bool uses_more_bits(uint32_t layer, uint32_t n_layer);

// The storage type of one tensor (the policy above, then the block-size fallback).
TypeChoice choose_type(TensorRole role, GgmlType requested, uint32_t layer, uint32_t n_layer, int64_t row_len,
                       bool tied_embeddings);

// general.file_type for a requested type (q4_k -> 15 MOSTLY_Q4_K_M, q8_0 -> 7, ...).
uint32_t file_type_of(GgmlType requested);

// The whole model, in file order. `n_vocab` is the vocabulary actually written.
// `fused_ssm_in`: Qwen3-Next delta-nets in the legacy layout (one ssm_in instead of attn_qkv
// and attn_gate).
std::vector<PlannedTensor> plan_tensors(const ModelShape& shape, uint32_t n_vocab, GgmlType requested,
                                        uint64_t seed, bool fused_ssm_in = false);

// Target standard deviations, exposed for the tests.
float router_logit_std();                  // the router's logits for a unit-RMS input
float output_logit_std(uint32_t n_vocab);  // the LM head's logits for a unit-RMS input

}  // namespace moe::synth
