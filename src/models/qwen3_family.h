#pragma once
// The trunk shared by Qwen3 (dense) and Qwen3-MoE: embedding, pre-norm attention blocks,
// final norm and output. Each architecture file supplies its feed-forward block.
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/blocks.h"
#include "models/hparams.h"
#include "models/model.h"
#include "models/trunk.h"
#include "models/weights.h"

namespace moe {

class Qwen3Family : public Model {
 public:
  explicit Qwen3Family(const gguf::Reader& reader, const ModelOptions& options);

  using Model::forward;
  void forward(std::span<const BatchEntry> batch, ThreadPool& pool) override;

 protected:
  // out = ffn_il(u) for n tokens.
  virtual void ffn(int il, std::span<const float> u, int n, std::span<float> out, ThreadPool& pool) = 0;

  Scratch scratch_;

 private:
  const gguf::TensorInfo* token_embd_;
  OutputHead head_;
  std::vector<std::vector<float>> attn_norm_, ffn_norm_;  // [n_layer][n_embd]
  std::vector<AttentionLayer> attn_;
  AttentionShape shape_{};
};


}  // namespace moe
