// Qwen3-Next (Qwen3-Next-80B-A3B): 48 layers; three of every four mix tokens with a gated
// delta-net (linear attention with a fixed-size recurrent state), the fourth with gated full
// attention (partial RoPE, a sigmoid output gate). Every layer's feed-forward is an MoE of 512
// experts (10 per token) plus a sigmoid-gated shared expert.
//   x = embed(token)
//   per layer: x += mixer(rmsnorm(x))          mixer = delta_net | gated attention
//              x += moe(rmsnorm(x))             routed experts + gated shared expert
//   logits = output(rmsnorm(x))
// reference/qwen-architectures.md sections 1-3. The GGUF's norms already hold 1 + w.
#include "models/architectures.h"
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/blocks.h"
#include "models/delta_net.h"
#include "models/hparams.h"
#include "models/trunk.h"
#include "models/weights.h"

namespace moe {
namespace {

class Qwen3Next final : public Model {
 public:
  explicit Qwen3Next(const gguf::Reader& reader, const ModelOptions& options);

  using Model::forward;
  void forward(std::span<const BatchEntry> batch, ThreadPool& pool) override;

  // Prefill runs of at least this many tokens use the chunked delta rule (0: never).
  static constexpr int kDeltaChunk = 64;

 private:
  struct Layer {
    bool recurrent = false;  // delta-net, else full attention
    int slot = 0;            // index among the layers of its kind (state slot or cache layer)
    std::vector<float> attn_norm, post_attention_norm;
    DeltaNetLayer delta;
    AttentionLayer attn;
    MoeLayer moe;
  };

  const gguf::TensorInfo* token_embd_;
  OutputHead head_;
  std::vector<Layer> layers_;
  AttentionShape attn_shape_;
  DeltaNetShape delta_shape_;
  Scratch scratch_;
};

Qwen3Next::Qwen3Next(const gguf::Reader& reader, const ModelOptions& options) : Model(options) {
  config_ = read_transformer_config(reader);
  ModelConfig& c = config_;
  const Qwen3NextShape shape = read_qwen3next_config(reader, c);
  delta_shape_ = shape.delta;
  attn_shape_ = shape.attention;
  const int n_ff_shared = shape.n_ff_shared;

  const WeightLoader load(reader, repack_target());
  const int64_t d = c.n_embd, ff = c.n_ff_expert, q_dim = int64_t(c.n_head) * c.head_dim,
                kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  const DeltaNetShape& ds = delta_shape_;
  token_embd_ = &reader.tensor("token_embd.weight");
  head_ = {load.matrix(c.tied_output ? "token_embd.weight" : "output.weight", c.n_vocab, d),
           load.vector("output_norm.weight", d), c.rms_eps};
  int n_recurrent = 0, n_attention = 0;
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    Layer L;
    L.recurrent = shape.recurrent(il);
    L.slot = L.recurrent ? n_recurrent++ : n_attention++;
    L.attn_norm = load.vector(b + "attn_norm.weight", d);
    L.post_attention_norm = load.vector(b + "post_attention_norm.weight", d);
    if (L.recurrent) {
      DeltaNetLayer& dn = L.delta;
      dn.fused = !load.has(b + "attn_qkv.weight");
      if (dn.fused) {
        dn.qkvz = load.matrix(b + "ssm_in.weight", ds.channels() + ds.value_dim(), d);
      } else {
        dn.qkv = load.matrix(b + "attn_qkv.weight", ds.channels(), d);
        dn.z = load.matrix(b + "attn_gate.weight", ds.value_dim(), d);
      }
      dn.ba = load.matrix(b + "ssm_ba.weight", 2 * ds.n_v_heads, d);
      dn.conv = load.floats(b + "ssm_conv1d.weight", {ds.conv_kernel, ds.channels()});
      dn.a = load.vector(b + "ssm_a", ds.n_v_heads);
      dn.dt_bias = load.vector(b + "ssm_dt.bias", ds.n_v_heads);
      dn.norm = load.vector(b + "ssm_norm.weight", ds.d_v);
      dn.out = load.matrix(b + "ssm_out.weight", d, ds.value_dim());
    } else {
      L.attn = {load.matrix(b + "attn_q.weight", 2 * q_dim, d), load.matrix(b + "attn_k.weight", kv_dim, d),
                load.matrix(b + "attn_v.weight", kv_dim, d), load.matrix(b + "attn_output.weight", d, q_dim),
                load.vector(b + "attn_q_norm.weight", c.head_dim), load.vector(b + "attn_k_norm.weight", c.head_dim)};
    }
    MoeLayer& moe = L.moe;
    moe.router = load.matrix(b + "ffn_gate_inp.weight", c.n_expert, d);
    moe.gate = load.experts(b + "ffn_gate_exps.weight", ff, d, c.n_expert);
    moe.up = load.experts(b + "ffn_up_exps.weight", ff, d, c.n_expert);
    moe.down = load.experts(b + "ffn_down_exps.weight", d, ff, c.n_expert);
    moe.n_expert_used = c.n_expert_used;
    moe.renormalize = true;
    moe.has_shared = true;
    moe.shared = {load.matrix(b + "ffn_gate_shexp.weight", n_ff_shared, d),
                  load.matrix(b + "ffn_up_shexp.weight", n_ff_shared, d),
                  load.matrix(b + "ffn_down_shexp.weight", d, n_ff_shared)};
    moe.shared_gate = load.gate_vector(b + "ffn_gate_inp_shexp.weight", d);
    layers_.push_back(std::move(L));
  }
  c.n_cache_layers = n_attention;
  c.recurrent_floats = size_t(n_recurrent) * ds.state_floats();
}

void Qwen3Next::forward(std::span<const BatchEntry> batch, ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int n = check_batch(batch, c.n_vocab);
  for (const BatchEntry& e : batch) {
    e.seq->recurrent(c.recurrent_floats);  // zero state for a new sequence
    if (e.seq->recurrent_length() != e.seq->length()) {
      fail("forward: a sequence of {} positions has recurrent state for {}: it cannot be truncated (fork it instead)",
           e.seq->length(), e.seq->recurrent_length());
    }
  }
  const size_t d = size_t(c.n_embd);
  Scratch& s = scratch_;
  const auto x = sized(s.x, n * d), u = sized(s.u, n * d), delta = sized(s.delta, n * d);
  embed_tokens(*token_embd_, batch, x);
  trace(-1, "embd", x);
  const std::vector<SeqTokens> seqs = grow_sequences(batch);

  for (size_t il = 0; il < layers_.size(); ++il) {
    const Layer& L = layers_[il];
    rms_norm(x, L.attn_norm, c.rms_eps, u);
    trace(int(il), "attn_in", u);
    if (L.recurrent) {
      delta_net(L.delta, delta_shape_, L.slot, u, seqs, delta, pool, s, kDeltaChunk);
    } else {
      attention(L.attn, attn_shape_, L.slot, u, seqs, delta, pool, s);
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    trace(int(il), "attn_out", x);
    rms_norm(x, L.post_attention_norm, c.rms_eps, u);
    trace(int(il), "ffn_in", u);
    moe_ffn(L.moe, u, n, delta, pool, s, forced_routing(int(il), n, c.n_expert_used));
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    trace(int(il), "ffn_out", x);
  }
  for (const SeqTokens& st : seqs) st.seq->set_recurrent_length(st.seq->length());
  write_logits(head_, x, batch, seqs, pool, s);
}

}  // namespace

std::unique_ptr<Model> make_qwen3next(const gguf::Reader& reader, const ModelOptions& options) { return std::make_unique<Qwen3Next>(reader, options); }

}  // namespace moe
