#pragma once
// Gated DeltaNet, the linear-attention mixer of Qwen3-Next (reference/qwen-architectures.md
// section 2.5): projections, a causal depthwise conv1d, L2-normed q and k, the gates beta and
// g, the delta-rule recurrence on a per-head state, a gated RMSNorm and the output projection.
// Its state lives in the sequence (SequenceState::recurrent), f32, a fixed size per layer.
#include <cstddef>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "models/blocks.h"

namespace moe {

struct DeltaNetShape {
  int n_k_heads = 0;    // key heads (ssm.group_count, 16)
  int n_v_heads = 0;    // value heads (ssm.time_step_rank, 32); value head j uses key head j / (n_v / n_k)
  int d_k = 0, d_v = 0; // head dims (ssm.state_size and ssm.inner_size / n_v_heads, 128)
  int conv_kernel = 0;  // ssm.conv_kernel, 4
  float rms_eps = 1e-6f;

  int key_dim() const { return n_k_heads * d_k; }
  int value_dim() const { return n_v_heads * d_v; }
  int channels() const { return 2 * key_dim() + value_dim(); }  // the conv runs over q | k | v
  size_t conv_state_floats() const { return size_t(channels()) * size_t(conv_kernel - 1); }
  size_t ssm_state_floats() const { return size_t(n_v_heads) * size_t(d_v) * size_t(d_k); }
  size_t state_floats() const { return conv_state_floats() + ssm_state_floats(); }
};

struct DeltaNetLayer {
  // Either the split projections (current GGUFs) or the legacy fused one.
  bool fused = false;
  WeightView qkv;   // [channels][n_embd]: all q heads | all k heads | all v heads
  WeightView z;     // [value_dim][n_embd]: the output gate, per value head
  WeightView qkvz;  // legacy ssm_in [channels + value_dim][n_embd], grouped per key head g:
                    // q_g | k_g | v of g's value heads | z of g's value heads
  WeightView ba;    // [2 n_v][n_embd], grouped per key head g: b of g's value heads, then a
  std::vector<float> conv;     // [channels][conv_kernel]; the last tap multiplies the current token
  std::vector<float> a;        // ssm_a = -exp(A_log), [n_v]
  std::vector<float> dt_bias;  // [n_v]
  std::vector<float> norm;     // [d_v], the gated RMSNorm's weight (shared by all heads)
  WeightView out;              // [n_embd][value_dim]
};

// Runs the layer for the batch's tokens. Each sequence's state for this layer is the
// state_floats() values at slot * state_floats() in its recurrent state: the conv's last
// conv_kernel - 1 inputs ([channel][time], oldest first), then per value head a d_v x d_k
// matrix S (row j holds column j of HF's d_k x d_v state, as llama.cpp stores it).
// Tokens run one at a time through the recurrence (exact for any split of a prompt), or, when
// `chunk` > 0, prefill runs of at least `chunk` tokens use the chunked form (section 2.5f).
void delta_net(const DeltaNetLayer& w, const DeltaNetShape& s, int slot, std::span<const float> u,
               std::span<const SeqTokens> seqs, std::span<float> out, ThreadPool& pool, Scratch& scratch,
               int chunk = 0);

// The recurrence for one value head over n tokens, token by token (the reference form), and
// the chunked form (chunks of `chunk` tokens): q, k rows of d_k (q already L2-normed and
// scaled), v rows of d_v, per-token beta and g (log decay); S is d_v x d_k as above, updated in
// place; o gets n rows of d_v. Rows are `stride` floats apart in q, k, v and o.
struct DeltaRuleArgs {
  const float* q;
  const float* k;
  const float* v;
  size_t q_stride, k_stride, v_stride;
  const float* beta;
  const float* g;
  size_t gate_stride;
  int n, d_k, d_v;
  float* state;
  float* o;
  size_t o_stride;
};
void delta_rule_recurrent(const DeltaRuleArgs& a);
void delta_rule_chunked(const DeltaRuleArgs& a, int chunk);

}  // namespace moe
