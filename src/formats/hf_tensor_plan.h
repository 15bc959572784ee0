#pragma once
// Which GGUF tensors a Qwen3 / Qwen3-MoE / Qwen3-Next checkpoint becomes, and where each row
// comes from.
//
// HF stores a Linear weight as [out, in] row-major: each output row is `in` contiguous values,
// which is exactly a GGUF tensor with ne = {in, out}. So no data is transposed: an output tensor
// is a concatenation of source row ranges, and only the names and the stacking change:
//   * per-expert tensors mlp.experts.E.{gate,up,down}_proj.weight [out, in] are stacked,
//     expert 0 first, into blk.L.ffn_{gate,up,down}_exps.weight {in, out, n_expert};
//   * the fused layout of transformers 5 (mlp.experts.gate_up_proj [E, 2*ff, embd] with gate in
//     rows 0..ff-1 of each expert and up in rows ff..2ff-1; mlp.experts.down_proj [E, embd, ff])
//     is split/copied into the same three tensors.
//   * Qwen3-Next: in_proj_qkvz (grouped per key head: q_g | k_g | v_g | z_g) is regrouped into
//     attn_qkv (all q | all k | all v) and attn_gate (all z) by row ranges; zero-centred norms
//     become 1 + w and A_log becomes -exp(A_log), as llama.cpp's converter writes them.
// Every source tensor's shape is checked against config.json, and every checkpoint tensor must
// be used (apart from rotary inv_freq buffers), so a layout we do not understand is an error
// rather than a silently wrong model.
#include <cstdint>
#include <string>
#include <vector>

#include "formats/hf_config.h"
#include "formats/safetensors_checkpoint.h"

namespace moe::formats {

// A run of consecutive rows of one source tensor.
struct RowRange {
  const SafeTensor* source = nullptr;
  int64_t first_row = 0;
  int64_t n_rows = 0;
};

// What happens to the values on the way (Qwen3-Next, as llama.cpp's converter does it).
enum class ValueTransform {
  None,
  PlusOne,      // zero-centred norms: the GGUF stores 1 + w
  MinusExp,     // A_log -> ssm_a = -exp(A_log)
};

struct PlannedTensor {
  std::string name;                // GGUF name, "blk.0.ffn_up_exps.weight"
  std::vector<int64_t> ne;         // GGUF shape, ne[0] = row length
  std::vector<RowRange> rows;      // concatenated in order, ne[1] * ne[2] rows in total
  bool keep_f32 = false;           // norms and the router stay F32 whatever --type says
  ValueTransform transform = ValueTransform::None;  // applied in f32
};

std::vector<PlannedTensor> plan_tensors(const HfModelConfig& config, const SafetensorsCheckpoint& checkpoint);

}  // namespace moe::formats
