// Qwen3 and Qwen3-MoE on one GPU: the CPU model files' forward pass (qwen3_family.cpp,
// qwen3moe.cpp) on device buffers, from the blocks of gpu_trunk.h.
//   x = embed(tokens)
//   per layer: x += attention(rmsnorm(x));  x += ffn(rmsnorm(x))   (dense or routed experts)
//   logits = output(rmsnorm(x))
#include "models/cuda/gpu_models.h"

#include "models/cuda/gpu_trunk.h"
#include "models/hparams.h"

namespace moe::cuda {
namespace {

class Qwen3Gpu final : public GpuTrunk {
 public:
  Qwen3Gpu(const gguf::Reader& reader, int device, HybridPlacement placement);

 private:
  void layers(int n, float* x) override;

  bool moe_ = false;
  std::vector<GpuAttention> attn_;
  std::vector<DeviceBuffer> ffn_norm_;
  std::vector<GpuFfn> dense_;  // qwen3
  std::vector<GpuMoe> moe_ffn_;  // qwen3moe
};

Qwen3Gpu::Qwen3Gpu(const gguf::Reader& reader, int device, HybridPlacement placement)
    : GpuTrunk(device, std::move(placement)) {
  config_ = read_transformer_config(reader);
  ModelConfig& c = config_;
  moe_ = reader.architecture() == "qwen3moe";
  if (moe_) {
    read_qwen3moe_experts(reader, c);
  } else {
    c.n_ff = int(reader.metadata().get_uint("qwen3.feed_forward_length"));
  }
  const WeightLoader load(reader);
  load_head(load);
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    attn_.push_back(load_attention(load, b, false, il));
    ffn_norm_.push_back(load_vector(load, b + "ffn_norm.weight", c.n_embd));
    if (moe_) {
      moe_ffn_.push_back(load_moe(load, il, 0));
    } else {
      dense_.push_back(load_ffn(load, b, "", c.n_ff));
    }
  }
  finish_loading(reader, {.n_head = c.n_head, .n_head_kv = c.n_head_kv, .head_dim = c.head_dim, .n_rot = c.head_dim,
                  .rope_base = c.rope_base, .rms_eps = c.rms_eps},
                 c.n_layer, device);
}

void Qwen3Gpu::layers(int n, float* x) {
  for (size_t il = 0; il < attn_.size(); ++il) {
    layer_ = int(il);
    attention(attn_[il], n, x, moe_ ? &moe_ffn_[il].router : nullptr);
    if (moe_) {
      moe_ffn(moe_ffn_[il], ffn_norm_[il], n, x, il + 1 < attn_.size() ? NextNorm::of(attn_[il + 1]) : NextNorm{});
    } else {
      dense_ffn(dense_[il], ffn_norm_[il], n, x);
    }
  }
}

}  // namespace

std::unique_ptr<Model> make_qwen3_gpu(const gguf::Reader& reader, int device, HybridPlacement placement) {
  return std::make_unique<Qwen3Gpu>(reader, device, std::move(placement));
}

}  // namespace moe::cuda
