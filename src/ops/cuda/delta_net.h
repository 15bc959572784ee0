#pragma once
// Qwen3-Next's gated delta-net on the GPU: the kernels of models/delta_net.cpp (the CPU
// reference, section 2.5 of reference/qwen-architectures.md) for one sequence's tokens.
// The projections are ordinary products (matvec.h); these are the steps between them.
#include <cstdint>

#include <cuda_runtime.h>

namespace moe::cuda {

// Causal depthwise conv1d over n tokens, then SiLU, in place: x[t][c] for c < channels (rows
// x_stride floats apart), w[c][K] (the last tap multiplies the current token), continuing from
// state[c][K - 1] (the last K - 1 inputs, oldest first), which is updated. K in 2..8.
cudaError_t conv1d_silu(float* x, int n, int channels, int64_t x_stride, const float* w, int K, float* state,
                        cudaStream_t stream);

// The delta rule over n tokens, in token order, with its inputs prepared:
//   q, k of key head j / (n_v / n_k): L2-normed (q also scaled by 1 / sqrt(d_k)),
//   beta = sigmoid(b), g = a * softplus(a_in + dt_bias) (decay exp(g)) from the `ba` row,
//   per value head j: S = exp(g) S;  S += beta (v - S k) k^T;  o = S q.
// State is [n_v][d_v][d_k] (row j of a head's S is what value j touches), updated in place.
// One token (decode) prepares its inputs on the fly; several are prepared first, in parallel,
// in place: their q and k are overwritten with the normed vectors and their b and a_in with
// beta and the decay, so qkv and ba are consumed.
struct DeltaRuleBatch {
  float* qkv = nullptr;  // [n][qkv_stride]: all q heads | all k heads | all v heads (the conv's output)
  int64_t qkv_stride = 0;
  float* ba = nullptr;   // [n][ba_stride]: per key head, b of its value heads, then their a_in
  int64_t ba_stride = 0;
  const float* a = nullptr;        // [n_v] ssm_a (= -exp(A_log))
  const float* dt_bias = nullptr;  // [n_v]
  int n = 0, n_k_heads = 0, n_v_heads = 0, d_k = 0, d_v = 0;
  float eps = 1e-6f;               // the L2 norms' floor
  float* state = nullptr;
  float* out = nullptr;            // [n][n_v * d_v]
};
cudaError_t delta_rule(const DeltaRuleBatch& b, cudaStream_t stream);

// One decode step (one token) of a delta-net in one launch, from the in-projection's output to
// the output projection's input: conv1d_silu of the token's channels, the delta rule, then per
// value head the gated RMSNorm (gated_rms_norm) quantized to Q8_0: the bits of conv1d_silu,
// delta_rule and ActivationBuffer::quantize_gated_norm(Q8_0) one after the other, without the
// launches and the round trips through memory between them. A block per value head.
// The state and the conv history are read before the kernel waits for the previous launch
// (launch.cuh): that launch must not write them (in the engine it is the in-projection).
// cudaErrorNotSupported, with nothing launched, for shapes it does not cover (d_k or d_v not a
// multiple of 32, d_k over 256, d_v over 128): run the three instead.
struct DeltaNetStep {
  const float* mixed = nullptr;   // [channels]: q heads | k heads | v heads (the in-projection's; not changed)
  const float* z = nullptr;       // [n_v * d_v]
  const float* ba = nullptr;      // [2 n_v], as DeltaRuleBatch's
  const float* conv_w = nullptr;  // [channels][K]
  float* conv_state = nullptr;    // [channels][K - 1]
  int K = 0;
  const float* a = nullptr;        // [n_v]
  const float* dt_bias = nullptr;  // [n_v]
  int n_k_heads = 0, n_v_heads = 0, d_k = 0, d_v = 0;
  float eps = 1e-6f;               // the L2 norms' floor
  float* state = nullptr;          // [n_v][d_v][d_k]
  const float* norm_w = nullptr;   // [d_v]: the gated RMSNorm's weights (shared by the heads)
  float norm_eps = 1e-6f;
  unsigned* counters = nullptr;    // [n_k_heads] device counters, zero (and left zero)
  int8_t* qs = nullptr;            // the Q8_0 activations of the output [n_v * d_v]
  float* scales = nullptr;
};
cudaError_t delta_net_step(const DeltaNetStep& s, cudaStream_t stream);

// out[r] = rms_norm(o[r], w) * silu(z[r]) for `rows` rows of `width` values (one row a value
// head of a token; w is shared by all heads). out may alias o.
cudaError_t gated_rms_norm(const float* o, const float* z, const float* w, float eps, int64_t rows, int width,
                           float* out, cudaStream_t stream);

}  // namespace moe::cuda
