// Qwen3 dense models (Qwen3-0.6B ... 32B): the Qwen3-MoE layer with one SwiGLU FFN in place of
// the experts; small models tie the output matrix to the embedding.
//   per layer: x += attention(rmsnorm(x));  x += down(silu(gate u) * up u), u = rmsnorm(x)
#include "models/architectures.h"
#include "models/qwen3_family.h"

namespace moe {

class Qwen3 final : public Qwen3Family {
 public:
  explicit Qwen3(const gguf::Reader& reader, const ModelOptions& options) : Qwen3Family(reader, options) {
    config_.n_ff = int(reader.metadata().get_uint("qwen3.feed_forward_length"));
    const WeightLoader load(reader, repack_target());
    const int64_t d = config_.n_embd, ff = config_.n_ff;
    for (int il = 0; il < config_.n_layer; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      ffn_.push_back({load.matrix(b + "ffn_gate.weight", ff, d), load.matrix(b + "ffn_up.weight", ff, d),
                      load.matrix(b + "ffn_down.weight", d, ff)});
    }
  }

 private:
  void ffn(int il, std::span<const float> u, int n, std::span<float> out, ThreadPool& pool) override {
    dense_ffn(ffn_[size_t(il)], u, n, out, pool, scratch_);
  }

  std::vector<DenseFfnLayer> ffn_;
};

std::unique_ptr<Model> make_qwen3(const gguf::Reader& reader, const ModelOptions& options) { return std::make_unique<Qwen3>(reader, options); }

}  // namespace moe
