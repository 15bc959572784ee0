#include "models/synth/tensor_plan.h"

#include <cmath>

#include "core/error.h"
#include "fmt/format.h"

namespace moe::synth {
namespace {

bool below_six_bits(GgmlType t) { return t == GgmlType::Q4_0 || t == GgmlType::Q4_K || t == GgmlType::Q5_K; }

// Sum of squares of a norm weight row: RMSNorm(x) * g has sum of squares ~ sum(g^2), so a
// projection scaled by 1/sqrt(sum(g^2)) turns it into exactly unit-variance logits per unit std.
float norm_energy(uint64_t seed, const std::string& norm_name, uint32_t n, std::span<const uint32_t> outliers) {
  std::vector<float> g(n);
  fill_row({.distribution = Distribution::NormWeight, .with_outliers = true}, seed, hash_name(norm_name), 0, outliers, g);
  double sum = 0;
  for (float v : g) sum += double(v) * v;
  return float(sum);
}

class Planner {
 public:
  Planner(const ModelShape& shape, GgmlType requested, uint64_t seed)
      : shape_(shape), requested_(requested), outliers_(outlier_channels(seed, shape.n_embd)) {}

  void norm(const std::string& name, uint32_t n, bool residual_width) {
    PlannedTensor t{.name = name, .type = GgmlType::F32, .shape = {n},
                    .recipe = {.distribution = Distribution::NormWeight, .with_outliers = residual_width},
                    .outliers_apply = residual_width, .note = {}, .row_source = {}};
    out.push_back(std::move(t));
  }

  void matrix(const std::string& name, TensorRole role, uint32_t layer, std::vector<int64_t> dims, float std,
              Distribution distribution = Distribution::Gaussian) {
    const TypeChoice c = choose_type(role, requested_, layer, shape_.n_layer, dims[0], shape_.tied_embeddings);
    const bool embedding = distribution == Distribution::Embedding;
    PlannedTensor t{.name = name, .type = c.type, .shape = std::move(dims),
                    .recipe = {.distribution = distribution, .std = std, .with_outliers = embedding},
                    .outliers_apply = embedding, .note = c.note, .row_source = {}};
    out.push_back(std::move(t));
  }

  // Small f32 tensors with their own distribution (conv taps, decay rates, gates).
  void small(const std::string& name, std::vector<int64_t> dims, WeightRecipe recipe) {
    out.push_back({.name = name, .type = GgmlType::F32, .shape = std::move(dims), .recipe = recipe,
                   .outliers_apply = false, .note = {}, .row_source = {}});
  }

  std::span<const uint32_t> outliers() const { return outliers_; }
  std::vector<PlannedTensor> out;

 private:
  const ModelShape& shape_;
  GgmlType requested_;
  std::vector<uint32_t> outliers_;
};

float fan_in(uint32_t n) { return 1.0f / std::sqrt(float(n)); }

// One Qwen3-Next layer: a delta-net or gated attention, then the MoE with its shared expert
// (tensor names and shapes: reference/qwen-architectures.md section 3.2).
void plan_qwen3next_layer(Planner& p, const ModelShape& s, uint32_t il, bool fused_ssm_in, uint64_t seed) {
  auto name = [il](const char* what) { return fmt::format("blk.{}.{}.weight", il, what); };
  const uint32_t key_dim = s.ssm_k_heads * s.ssm_head_dim, value_dim = s.ssm_v_heads * s.ssm_head_dim;
  const uint32_t channels = 2 * key_dim + value_dim;
  p.norm(name("attn_norm"), s.n_embd, true);
  if (s.is_recurrent(il)) {
    if (fused_ssm_in) {
      p.matrix(name("ssm_in"), TensorRole::Matrix, il, {s.n_embd, channels + value_dim}, fan_in(s.n_embd));
      // Per key head g: q_g | k_g | v of g's value heads | z of g's value heads.
      const uint64_t dk = s.ssm_head_dim, group = uint64_t(s.ssm_v_heads / s.ssm_k_heads) * s.ssm_head_dim;
      const std::string qkv = name("attn_qkv"), gate = name("attn_gate");
      p.out.back().row_source = [=](uint64_t row) -> std::pair<std::string, uint64_t> {
        const uint64_t g = row / (2 * dk + 2 * group), off = row % (2 * dk + 2 * group);
        if (off < dk) return {qkv, g * dk + off};
        if (off < 2 * dk) return {qkv, key_dim + g * dk + off - dk};
        if (off < 2 * dk + group) return {qkv, 2 * key_dim + g * group + off - 2 * dk};
        return {gate, g * group + off - 2 * dk - group};
      };
    } else {
      p.matrix(name("attn_qkv"), TensorRole::AttnV, il, {s.n_embd, channels}, fan_in(s.n_embd));
      p.matrix(name("attn_gate"), TensorRole::Matrix, il, {s.n_embd, value_dim}, fan_in(s.n_embd));
    }
    // b and a near unit scale: beta = sigmoid(b) spreads over (0, 1), a moves the decay.
    p.matrix(name("ssm_ba"), TensorRole::Matrix, il, {s.n_embd, 2 * s.ssm_v_heads}, fan_in(s.n_embd));
    p.small(name("ssm_conv1d"), {s.ssm_conv_kernel, channels}, {.distribution = Distribution::Gaussian, .std = 0.5f});
    // ssm_a = -exp(A_log) with HF's A ~ U(0, 16); dt_bias = softplus^-1(dt) for dt in
    // [0.001, 0.1]: decays from almost none to strong, as trained models have.
    p.small(fmt::format("blk.{}.ssm_a", il), {s.ssm_v_heads},
            {.distribution = Distribution::Uniform, .low = -16.0f, .high = -0.05f});
    p.small(fmt::format("blk.{}.ssm_dt.bias", il), {s.ssm_v_heads},
            {.distribution = Distribution::Uniform, .low = -6.9f, .high = -2.25f});
    p.norm(name("ssm_norm"), s.ssm_head_dim, false);
    p.matrix(name("ssm_out"), TensorRole::Matrix, il, {value_dim, s.n_embd}, fan_in(value_dim));
  } else {
    const uint32_t n_q = s.n_head * s.head_dim, n_kv = s.n_head_kv * s.head_dim;
    p.matrix(name("attn_q"), TensorRole::Matrix, il, {s.n_embd, 2 * n_q}, fan_in(s.n_embd));  // query + gate per head
    p.matrix(name("attn_k"), TensorRole::Matrix, il, {s.n_embd, n_kv}, fan_in(s.n_embd));
    p.matrix(name("attn_v"), TensorRole::AttnV, il, {s.n_embd, n_kv}, fan_in(s.n_embd));
    p.matrix(name("attn_output"), TensorRole::Matrix, il, {n_q, s.n_embd}, fan_in(n_q));
    p.norm(name("attn_q_norm"), s.head_dim, false);
    p.norm(name("attn_k_norm"), s.head_dim, false);
  }
  p.norm(name("post_attention_norm"), s.n_embd, true);
  const float router_std =
      router_logit_std() / std::sqrt(norm_energy(seed, name("post_attention_norm"), s.n_embd, p.outliers()));
  p.matrix(name("ffn_gate_inp"), TensorRole::Router, il, {s.n_embd, s.n_expert}, router_std);
  p.matrix(name("ffn_gate_exps"), TensorRole::Matrix, il, {s.n_embd, s.n_ff_exp, s.n_expert}, fan_in(s.n_embd));
  p.matrix(name("ffn_up_exps"), TensorRole::Matrix, il, {s.n_embd, s.n_ff_exp, s.n_expert}, fan_in(s.n_embd));
  p.matrix(name("ffn_down_exps"), TensorRole::FfnDown, il, {s.n_ff_exp, s.n_embd, s.n_expert}, fan_in(s.n_ff_exp));
  p.small(name("ffn_gate_inp_shexp"), {s.n_embd}, {.distribution = Distribution::Gaussian, .std = fan_in(s.n_embd)});
  p.matrix(name("ffn_gate_shexp"), TensorRole::Matrix, il, {s.n_embd, s.n_ff_shexp}, fan_in(s.n_embd));
  p.matrix(name("ffn_up_shexp"), TensorRole::Matrix, il, {s.n_embd, s.n_ff_shexp}, fan_in(s.n_embd));
  p.matrix(name("ffn_down_shexp"), TensorRole::FfnDown, il, {s.n_ff_shexp, s.n_embd}, fan_in(s.n_ff_shexp));
}

}  // namespace

float router_logit_std() { return 3.0f; }

float output_logit_std(uint32_t n_vocab) {
  // 1.1 * sqrt(2 ln V) is just above the expected maximum of V standard normals scaled to 1:
  // the top token then takes a third to a half of the probability (V = 512: ~0.5, V = 151936:
  // ~0.35), peaked but not one-hot.
  return 1.1f * std::sqrt(2.0f * std::log(float(std::max<uint32_t>(n_vocab, 2))));
}

bool uses_more_bits(uint32_t layer, uint32_t n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer >= n_layer / 8 && (layer - n_layer / 8) % 3 == 2);
}

TypeChoice choose_type(TensorRole role, GgmlType requested, uint32_t layer, uint32_t n_layer, int64_t row_len,
                       bool tied_embeddings) {
  GgmlType t = requested;
  switch (role) {
    case TensorRole::Norm:
    case TensorRole::Router: return {GgmlType::F32, ""};
    case TensorRole::TokenEmbedding:
      if (tied_embeddings && below_six_bits(requested)) t = GgmlType::Q6_K;
      break;
    case TensorRole::Output:
      if (below_six_bits(requested)) t = GgmlType::Q6_K;
      break;
    case TensorRole::AttnV:
    case TensorRole::FfnDown:
      if ((requested == GgmlType::Q4_K || requested == GgmlType::Q5_K) && uses_more_bits(layer, n_layer)) {
        t = GgmlType::Q6_K;
      }
      break;
    case TensorRole::Matrix: break;
  }
  if (row_len % int64_t(block_size(t)) == 0) return {t, ""};
  const GgmlType fallback = row_len % 32 == 0 && t != GgmlType::F32 ? GgmlType::Q8_0 : GgmlType::F16;
  return {fallback, fmt::format("row length {} is not a multiple of the {} block ({}), stored as {}", row_len,
                                type_name(t), block_size(t), type_name(fallback))};
}

uint32_t file_type_of(GgmlType requested) {
  switch (requested) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q4_K: return 15;  // MOSTLY_Q4_K_M
    case GgmlType::Q5_K: return 17;  // MOSTLY_Q5_K_M
    case GgmlType::Q6_K: return 18;
    case GgmlType::BF16: return 32;
    default: fail("synth: no file type for {}", type_name(requested));
  }
}

std::vector<PlannedTensor> plan_tensors(const ModelShape& s, uint32_t n_vocab, GgmlType requested, uint64_t seed,
                                        bool fused_ssm_in) {
  Planner p(s, requested, seed);
  const uint32_t n_q = s.n_head * s.head_dim, n_kv = s.n_head_kv * s.head_dim;

  // The LM head: logits = W * (RMSNorm(x) * g_out); scaling W by 1/sqrt(sum g_out^2) gives
  // logits of std output_logit_std. Tied models use token_embd as the head, so the embedding
  // takes that scale; untied ones get unit-std embeddings (the first RMSNorm removes the scale
  // anyway, but unit entries keep the embedding comparable to what each layer adds).
  const float head_std =
      output_logit_std(n_vocab) / std::sqrt(norm_energy(seed, "output_norm.weight", s.n_embd, p.outliers()));
  const float embd_std = s.tied_embeddings ? head_std : 1.0f;
  p.matrix("token_embd.weight", TensorRole::TokenEmbedding, 0, {s.n_embd, n_vocab}, embd_std, Distribution::Embedding);

  for (uint32_t il = 0; il < s.n_layer; ++il) {
    auto name = [il](const char* what) { return fmt::format("blk.{}.{}.weight", il, what); };
    if (s.arch == Arch::Qwen3Next) {
      plan_qwen3next_layer(p, s, il, fused_ssm_in, seed);
      continue;
    }
    p.norm(name("attn_norm"), s.n_embd, true);
    p.matrix(name("attn_q"), TensorRole::Matrix, il, {s.n_embd, n_q}, fan_in(s.n_embd));
    p.matrix(name("attn_k"), TensorRole::Matrix, il, {s.n_embd, n_kv}, fan_in(s.n_embd));
    p.matrix(name("attn_v"), TensorRole::AttnV, il, {s.n_embd, n_kv}, fan_in(s.n_embd));
    p.matrix(name("attn_output"), TensorRole::Matrix, il, {n_q, s.n_embd}, fan_in(n_q));
    p.norm(name("attn_q_norm"), s.head_dim, false);
    p.norm(name("attn_k_norm"), s.head_dim, false);
    p.norm(name("ffn_norm"), s.n_embd, true);
    if (s.is_moe()) {
      // Router logits of std 3 for a unit-RMS input: the top 8 of 128 experts then hold ~80% of
      // the probability (top 2 of 8: ~85%), so routing is decisive and input-dependent.
      const float router_std = router_logit_std() / std::sqrt(norm_energy(seed, name("ffn_norm"), s.n_embd, p.outliers()));
      p.matrix(name("ffn_gate_inp"), TensorRole::Router, il, {s.n_embd, s.n_expert}, router_std);
      p.matrix(name("ffn_gate_exps"), TensorRole::Matrix, il, {s.n_embd, s.n_ff_exp, s.n_expert}, fan_in(s.n_embd));
      p.matrix(name("ffn_up_exps"), TensorRole::Matrix, il, {s.n_embd, s.n_ff_exp, s.n_expert}, fan_in(s.n_embd));
      p.matrix(name("ffn_down_exps"), TensorRole::FfnDown, il, {s.n_ff_exp, s.n_embd, s.n_expert}, fan_in(s.n_ff_exp));
    } else {
      p.matrix(name("ffn_gate"), TensorRole::Matrix, il, {s.n_embd, s.n_ff}, fan_in(s.n_embd));
      p.matrix(name("ffn_up"), TensorRole::Matrix, il, {s.n_embd, s.n_ff}, fan_in(s.n_embd));
      p.matrix(name("ffn_down"), TensorRole::FfnDown, il, {s.n_ff, s.n_embd}, fan_in(s.n_ff));
    }
  }
  p.norm("output_norm.weight", s.n_embd, true);
  if (!s.tied_embeddings) p.matrix("output.weight", TensorRole::Output, 0, {s.n_embd, n_vocab}, head_std);
  return std::move(p.out);
}

}  // namespace moe::synth
