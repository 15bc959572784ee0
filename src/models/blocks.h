#pragma once
// The building blocks the model files are made of. Activations are row-major [n_tokens][width]
// f32; weights are views into the model file. Every block is deterministic: a token's result
// does not depend on the other tokens in the call or on the thread count.
#include <cstdint>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "engine/kv_cache.h"
#include "models/weights.h"

namespace moe {

float sigmoid(float x);

// out[t] = x[t] / rms(x[t]) * w, over rows of w.size() values. x and out may alias.
void rms_norm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> out);

// Rotates the first n_rot dims of one head in NEOX order: pairs (i, i + n_rot/2).
void rope_neox(std::span<float> head, int n_rot, int64_t pos, float base);

struct AttentionLayer {
  // q: [n_head*head_dim][n_embd] (gated: [n_head][2*head_dim], each head's query then its
  // output gate), k/v: [n_head_kv*head_dim][n_embd], o: [n_embd][n_head*head_dim]
  WeightView q, k, v, o;
  std::vector<float> q_norm;  // [head_dim] per-head RMSNorm of q and k, before RoPE
  std::vector<float> k_norm;
};

struct AttentionShape {
  int n_head = 0, n_head_kv = 0, head_dim = 0;
  int n_rot = 0;       // dims of each head RoPE rotates (NEOX order): head_dim, or fewer (Qwen3-Next: 64 of 256)
  float rope_base = 10000.0f, rms_eps = 1e-6f;
  bool gated = false;  // Qwen3-Next: the output is multiplied by sigmoid(gate) before the o projection
};

// The tokens of one sequence inside a batch: activation rows [first, first + count), at
// positions seq->length() - count .. seq->length() - 1 (the caller has grown seq already).
struct SeqTokens {
  SequenceState* seq;
  int first, count;
};

// Buffers reused from one forward pass to the next, so that a warm step neither allocates
// nor page-faults. One per model; forward passes of a model do not run concurrently.
struct Scratch {
  std::vector<float> x, u, delta;                 // residual stream, normed input, block output
  std::vector<float> q, k, v, keys, values, mixed, qg, gate;  // attention
  std::vector<float> qkvz, conv_in, z, ba, beta, decay, dn_out;  // delta-net
  std::vector<float> out_rows, out_logits;        // rows that want logits, and theirs
  std::vector<float> router_logits, g, up, expert_out, shared_out;  // feed-forward
  std::vector<std::byte> gathered;
  QuantizedActivations input, hidden;
};

// v resized to at least n elements (never shrunk), as a span of exactly n.
template <class T>
std::span<T> sized(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return {v.data(), n};
}

// Causal self-attention of the batch's tokens: projects u, normalises and rotates q and k,
// stores k and v in each token's sequence at `cache_layer`, attends over every cached position
// <= the token's own in its own sequence, and writes the output projection to out [n][n_embd].
void attention(const AttentionLayer& w, const AttentionShape& s, int cache_layer, std::span<const float> u,
               std::span<const SeqTokens> seqs, std::span<float> out, ThreadPool& pool, Scratch& scratch);

struct DenseFfnLayer {
  WeightView gate, up;  // [n_ff][n_embd]
  WeightView down;      // [n_embd][n_ff]
};

// out = down(silu(gate u) * up u) for n tokens.
void dense_ffn(const DenseFfnLayer& w, std::span<const float> u, int n, std::span<float> out, ThreadPool& pool,
               Scratch& scratch);

struct MoeLayer {
  WeightView router;          // [n_expert][n_embd], f32 in practice
  ExpertWeights gate, up;     // n_expert x [n_ff_expert][n_embd]
  ExpertWeights down;         // n_expert x [n_embd][n_ff_expert]
  int n_expert_used = 0;
  bool renormalize = true;    // divide the selected probabilities by their sum
  // Qwen3-Next: a shared expert every token goes through, scaled by sigmoid(shared_gate . u).
  bool has_shared = false;
  DenseFfnLayer shared;
  std::vector<float> shared_gate;  // [n_embd]
};

// Routed experts: softmax over the router logits, top-k, (renormalise), and the weighted sum
// of the selected experts' SwiGLU outputs, plus the gated shared expert where there is one.
// Tokens are grouped by expert so each expert's weights are read once per call.
// forced: [n][k] experts chosen outside the model (Model::set_routing_source) instead of the
// router's top k; the router's weights stay, in rank order. Empty: the router's choice.
void moe_ffn(const MoeLayer& w, std::span<const float> u, int n, std::span<float> out, ThreadPool& pool,
             Scratch& scratch, std::span<const int32_t> forced = {});

// The weighted sum of routed experts' SwiGLU outputs for n tokens, given the routing: token t
// goes to experts[t * k + r] with weights[t * k + r] (k = experts.size() / n); an expert id < 0
// is a slot computed elsewhere (the hybrid engine's GPU) and adds nothing here. out [n][n_embd]
// is overwritten. moe_ffn() without the router and the shared expert.
void expert_sum(const MoeLayer& w, std::span<const float> u, int n, std::span<const int32_t> experts,
                std::span<const float> weights, std::span<float> out, ThreadPool& pool, Scratch& scratch);

// The routing decision for one token: expert ids and weights, in rank order.
struct Route {
  std::vector<int> experts;
  std::vector<float> weights;
};
Route route_token(std::span<const float> router_logits, int k, bool renormalize);

}  // namespace moe
