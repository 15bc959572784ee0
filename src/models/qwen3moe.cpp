// Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B, Qwen3-Coder-30B-A3B): a pre-norm transformer with
// GQA attention (q/k RMSNorm before RoPE) and 128 routed SwiGLU experts, 8 per token.
//   x = embed(token)
//   per layer: x += attention(rmsnorm(x));  x += moe(rmsnorm(x))
//   logits = output(rmsnorm(x))
// reference/qwen-architectures.md section 4.
#include "models/architectures.h"
#include "models/qwen3_family.h"

namespace moe {

class Qwen3Moe final : public Qwen3Family {
 public:
  explicit Qwen3Moe(const gguf::Reader& reader, const ModelOptions& options) : Qwen3Family(reader, options) {
    read_qwen3moe_experts(reader, config_);
    const WeightLoader load(reader, repack_target());
    const int64_t d = config_.n_embd, ff = config_.n_ff_expert;
    for (int il = 0; il < config_.n_layer; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      MoeLayer moe;
      moe.router = load.matrix(b + "ffn_gate_inp.weight", config_.n_expert, d);
      moe.gate = load.experts(b + "ffn_gate_exps.weight", ff, d, config_.n_expert);
      moe.up = load.experts(b + "ffn_up_exps.weight", ff, d, config_.n_expert);
      moe.down = load.experts(b + "ffn_down_exps.weight", d, ff, config_.n_expert);
      moe.n_expert_used = config_.n_expert_used;
      moe.renormalize = true;  // Qwen3-MoE's norm_topk_prob; llama.cpp always renormalises
      moe_.push_back(moe);
    }
  }

 private:
  void ffn(int il, std::span<const float> u, int n, std::span<float> out, ThreadPool& pool) override {
    moe_ffn(moe_[size_t(il)], u, n, out, pool, scratch_, forced_routing(il, n, config_.n_expert_used));
  }

  std::vector<MoeLayer> moe_;
};

std::unique_ptr<Model> make_qwen3moe(const gguf::Reader& reader, const ModelOptions& options) { return std::make_unique<Qwen3Moe>(reader, options); }

}  // namespace moe
