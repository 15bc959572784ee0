#include "formats/hf_tensor_plan.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <unordered_set>

#include "core/error.h"

namespace moe::formats {
namespace {

class Planner {
 public:
  Planner(const HfModelConfig& c, const SafetensorsCheckpoint& ck) : c_(c), ck_(ck) {}

  std::vector<PlannedTensor> run() {
    const int64_t vocab = c_.vocab_size, embd = c_.n_embd;
    whole("token_embd.weight", "model.embed_tokens.weight", {vocab, embd}, false);
    for (uint32_t l = 0; l < c_.n_layer; ++l) layer(l);
    whole("output_norm.weight", "model.norm.weight", {embd}, true, next() ? ValueTransform::PlusOne : ValueTransform::None);
    if (ck_.find("lm_head.weight")) {
      whole("output.weight", "lm_head.weight", {vocab, embd}, false);
    } else if (!c_.tie_word_embeddings) {
      fail("{}: no tensor 'lm_head.weight' and config.json tie_word_embeddings is false", ck_.dir());
    }
    check_all_used();
    return std::move(out_);
  }

 private:
  const SafeTensor& take(const std::string& name, const std::vector<int64_t>& shape) {
    const SafeTensor& t = ck_.get(name);
    if (t.shape != shape) {
      fail("{}: tensor '{}' has shape {} but config.json implies [{}]", *t.file, name, t.shape_string(),
           fmt::join(shape, ", "));
    }
    used_.insert(t.name);
    return t;
  }

  // The reversed HF shape: the contiguous dimension first.
  static std::vector<int64_t> ne_of(const std::vector<int64_t>& shape) { return {shape.rbegin(), shape.rend()}; }

  bool next() const { return c_.arch == HfArch::Qwen3Next; }

  void whole(const std::string& gguf_name, const std::string& hf_name, const std::vector<int64_t>& shape, bool keep_f32,
             ValueTransform transform = ValueTransform::None) {
    const SafeTensor& t = take(hf_name, shape);
    out_.push_back({gguf_name, ne_of(shape), {{&t, 0, t.n_rows()}}, keep_f32, transform});
  }

  void layer(uint32_t l) {
    if (next()) return qwen3next_layer(l);
    const std::string hf = fmt::format("model.layers.{}.", l), blk = fmt::format("blk.{}.", l);
    const int64_t embd = c_.n_embd, hd = c_.head_dim;
    const int64_t q_rows = int64_t(c_.n_head) * hd, kv_rows = int64_t(c_.n_head_kv) * hd;
    whole(blk + "attn_norm.weight", hf + "input_layernorm.weight", {embd}, true);
    whole(blk + "attn_q.weight", hf + "self_attn.q_proj.weight", {q_rows, embd}, false);
    whole(blk + "attn_k.weight", hf + "self_attn.k_proj.weight", {kv_rows, embd}, false);
    whole(blk + "attn_v.weight", hf + "self_attn.v_proj.weight", {kv_rows, embd}, false);
    whole(blk + "attn_output.weight", hf + "self_attn.o_proj.weight", {embd, q_rows}, false);
    whole(blk + "attn_q_norm.weight", hf + "self_attn.q_norm.weight", {hd}, true);
    whole(blk + "attn_k_norm.weight", hf + "self_attn.k_norm.weight", {hd}, true);
    whole(blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", {embd}, true);
    if (c_.arch == HfArch::Qwen3) {
      const int64_t ff = *c_.n_ff;
      whole(blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight", {ff, embd}, false);
      whole(blk + "ffn_up.weight", hf + "mlp.up_proj.weight", {ff, embd}, false);
      whole(blk + "ffn_down.weight", hf + "mlp.down_proj.weight", {embd, ff}, false);
      return;
    }
    moe(hf, blk);
  }

  void moe(const std::string& hf, const std::string& blk) {
    // The router is small and decides which experts run: llama.cpp keeps it F32.
    whole(blk + "ffn_gate_inp.weight", hf + "mlp.gate.weight", {int64_t(c_.n_expert), c_.n_embd}, true);
    const std::string experts = hf + "mlp.experts.";
    if (const auto fused = find_either(experts + "gate_up_proj")) {
      fused_experts(blk, experts, *fused);
    } else {
      per_expert(blk, experts);
    }
  }

  // Qwen3-Next: a gated delta-net or gated attention, then the MoE with its shared expert.
  void qwen3next_layer(uint32_t l) {
    const std::string hf = fmt::format("model.layers.{}.", l), blk = fmt::format("blk.{}.", l);
    const int64_t embd = c_.n_embd, hd = c_.head_dim;
    const auto plus_one = ValueTransform::PlusOne;
    whole(blk + "attn_norm.weight", hf + "input_layernorm.weight", {embd}, true, plus_one);
    if (c_.is_linear_layer(l)) {
      const int64_t nk = c_.linear_k_heads, nv = c_.linear_v_heads, dk = c_.linear_k_dim, dv = c_.linear_v_dim;
      const int64_t kd = nk * dk, vd = nv * dv, group_v = nv / nk * dv, block = 2 * dk + 2 * group_v;
      const std::string la = hf + "linear_attn.";
      const SafeTensor& qkvz = take(la + "in_proj_qkvz.weight", {nk * block, embd});
      PlannedTensor qkv{blk + "attn_qkv.weight", {embd, 2 * kd + vd}, {}, false};
      for (int64_t part : {int64_t(0), dk, 2 * dk}) {  // all q heads, all k heads, all v heads
        const int64_t rows = part == 2 * dk ? group_v : dk;
        for (int64_t g = 0; g < nk; ++g) qkv.rows.push_back({&qkvz, g * block + part, rows});
      }
      PlannedTensor z{blk + "attn_gate.weight", {embd, vd}, {}, false};
      for (int64_t g = 0; g < nk; ++g) z.rows.push_back({&qkvz, g * block + 2 * dk + group_v, group_v});
      out_.push_back(std::move(qkv));
      out_.push_back(std::move(z));
      whole(blk + "ssm_ba.weight", la + "in_proj_ba.weight", {2 * nv, embd}, false);
      const int64_t channels = 2 * kd + vd;
      const SafeTensor& conv = take(la + "conv1d.weight", {channels, 1, int64_t(c_.conv_kernel)});
      out_.push_back({blk + "ssm_conv1d.weight", {int64_t(c_.conv_kernel), channels}, {{&conv, 0, conv.n_rows()}}, true});
      whole(blk + "ssm_a", la + "A_log", {nv}, true, ValueTransform::MinusExp);
      whole(blk + "ssm_dt.bias", la + "dt_bias", {nv}, true);
      whole(blk + "ssm_norm.weight", la + "norm.weight", {dv}, true);  // the gated norm: a plain weight
      whole(blk + "ssm_out.weight", la + "out_proj.weight", {embd, vd}, false);
    } else {
      const int64_t q_rows = int64_t(c_.n_head) * hd, kv_rows = int64_t(c_.n_head_kv) * hd;
      whole(blk + "attn_q.weight", hf + "self_attn.q_proj.weight", {2 * q_rows, embd}, false);  // query + gate
      whole(blk + "attn_k.weight", hf + "self_attn.k_proj.weight", {kv_rows, embd}, false);
      whole(blk + "attn_v.weight", hf + "self_attn.v_proj.weight", {kv_rows, embd}, false);
      whole(blk + "attn_output.weight", hf + "self_attn.o_proj.weight", {embd, q_rows}, false);
      whole(blk + "attn_q_norm.weight", hf + "self_attn.q_norm.weight", {hd}, true, plus_one);
      whole(blk + "attn_k_norm.weight", hf + "self_attn.k_norm.weight", {hd}, true, plus_one);
    }
    whole(blk + "post_attention_norm.weight", hf + "post_attention_layernorm.weight", {embd}, true, plus_one);
    moe(hf, blk);
    const int64_t sff = c_.n_ff_shexp;
    whole(blk + "ffn_gate_shexp.weight", hf + "mlp.shared_expert.gate_proj.weight", {sff, embd}, false);
    whole(blk + "ffn_up_shexp.weight", hf + "mlp.shared_expert.up_proj.weight", {sff, embd}, false);
    whole(blk + "ffn_down_shexp.weight", hf + "mlp.shared_expert.down_proj.weight", {embd, sff}, false);
    const SafeTensor& sg = take(hf + "mlp.shared_expert_gate.weight", {1, embd});
    out_.push_back({blk + "ffn_gate_inp_shexp.weight", {embd, 1}, {{&sg, 0, 1}}, true});  // as llama.cpp writes it
  }

  // transformers 5 may name the fused parameters with or without a ".weight" suffix.
  std::optional<std::string> find_either(const std::string& name) const {
    if (ck_.find(name)) return name;
    if (ck_.find(name + ".weight")) return name + ".weight";
    return std::nullopt;
  }

  void fused_experts(const std::string& blk, const std::string& experts, const std::string& gate_up_name) {
    const int64_t n = c_.n_expert, ff = c_.n_ff_exp, embd = c_.n_embd;
    const SafeTensor& gate_up = take(gate_up_name, {n, 2 * ff, embd});
    const auto down_name = find_either(experts + "down_proj");
    if (!down_name) fail("{}: '{}' is present but '{}down_proj' is missing", ck_.dir(), gate_up_name, experts);
    const SafeTensor& down = take(*down_name, {n, embd, ff});
    PlannedTensor gate{blk + "ffn_gate_exps.weight", {embd, ff, n}, {}, false};
    PlannedTensor up{blk + "ffn_up_exps.weight", {embd, ff, n}, {}, false};
    for (int64_t e = 0; e < n; ++e) {
      gate.rows.push_back({&gate_up, e * 2 * ff, ff});
      up.rows.push_back({&gate_up, e * 2 * ff + ff, ff});
    }
    out_.push_back(std::move(gate));
    out_.push_back(std::move(up));
    out_.push_back({blk + "ffn_down_exps.weight", {ff, embd, n}, {{&down, 0, n * embd}}, false});
  }

  void per_expert(const std::string& blk, const std::string& experts) {
    const int64_t n = c_.n_expert, ff = c_.n_ff_exp, embd = c_.n_embd;
    struct Kind {
      const char* hf;
      const char* gguf;
      std::vector<int64_t> shape;
    };
    for (const Kind& k : {Kind{"gate_proj", "ffn_gate_exps", {ff, embd}}, Kind{"up_proj", "ffn_up_exps", {ff, embd}},
                          Kind{"down_proj", "ffn_down_exps", {embd, ff}}}) {
      PlannedTensor p{blk + k.gguf + ".weight", {k.shape[1], k.shape[0], n}, {}, false};
      for (int64_t e = 0; e < n; ++e) {
        const SafeTensor& t = take(fmt::format("{}{}.{}.weight", experts, e, k.hf), k.shape);
        p.rows.push_back({&t, 0, t.n_rows()});
      }
      out_.push_back(std::move(p));
    }
  }

  void check_all_used() const {
    for (const auto name : ck_.names()) {
      if (used_.contains(name) || name.ends_with(".rotary_emb.inv_freq")) continue;
      // Qwen3-Next checkpoints ship a multi-token-prediction head (mtp.*) that HF itself does not
      // load; it is for speculative decoding, not part of the model's forward pass.
      if (next() && name.starts_with("mtp.")) continue;
      fail("{}: tensor '{}' is not part of a {} checkpoint as convert understands it (mixed or unknown layout)",
           *ck_.get(name).file, name, c_.hf_architecture);
    }
  }

  const HfModelConfig& c_;
  const SafetensorsCheckpoint& ck_;
  std::unordered_set<std::string_view> used_;
  std::vector<PlannedTensor> out_;
};

}  // namespace

std::vector<PlannedTensor> plan_tensors(const HfModelConfig& config, const SafetensorsCheckpoint& checkpoint) {
  return Planner(config, checkpoint).run();
}

}  // namespace moe::formats
