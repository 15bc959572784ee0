#pragma once
// The small ops of a forward pass on the GPU, each the CPU block's arithmetic (models/blocks.cpp)
// on device pointers, asynchronous on `stream`. They return the launch's error; callers wrap
// them in MOE_CUDA_CHECK. Shapes are the caller's to get right (the model loader checks them);
// tests/cuda checks every op against its CPU reference on random data.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <cuda_runtime.h>

#include "core/ggml_type.h"
#include "ops/cuda/attention.h"

namespace moe::cuda {

// out[r] = x[r] / rms(x[r]) * w for `rows` rows of `width` values (sum of squares in double,
// as on the CPU). x and out may alias. Per-head q/k norms are rows of head_dim.
cudaError_t rms_norm(const float* x, const float* w, float eps, int64_t rows, int width, float* out,
                     cudaStream_t stream);

// RoPE's frequencies base^(-2i / n_rot) for i < n_rot / 2, in double, computed on the host with
// the CPU engine's expression (models/blocks.cpp), so both backends rotate by the same angles.
// Upload once per model: the kernels below read them from device memory.
std::vector<double> rope_frequencies(int n_rot, float base);

// NEOX rotary embedding of the first n_rot dims of every head, in place: x is [n_tok][n_head]
// [head_dim], pos[t] the position of token t, freq the table above (device memory). The
// angle pos * freq in double, as on the CPU.
cudaError_t rope_neox(float* x, const int32_t* pos, int n_tok, int n_head, int head_dim, int n_rot, const double* freq,
                      cudaStream_t stream);

// h = silu(g) * u over n values (h may alias g).
cudaError_t swiglu(const float* g, const float* u, int64_t n, float* h, cudaStream_t stream);

// The same for rows holding gate and up side by side: y is [rows][2 * width] (gate, then up),
// h[r][i] = silu(y[r][i]) * y[r][width + i], h is [rows][width].
cudaError_t swiglu_pairs(const float* y, int64_t rows, int64_t width, float* h, cudaStream_t stream);

// y += x over n values.
cudaError_t add(float* y, const float* x, int64_t n, cudaStream_t stream);

// out[j] = x[j / k] for j < n * k: each token's row once per expert it is routed to.
cudaError_t repeat_rows(const float* x, int n, int k, int64_t width, float* out, cudaStream_t stream);

// out[t] = sum over r < k of weights[t][r] * rows[t * k + r], in rank order, each product
// rounded before it is added (the CPU's sum): the experts' outputs combined. With
// `accumulate`, out[t] += that sum (the residual add fused in).
// With `shared` (Qwen3-Next's shared expert, [n][width]), sigmoid(shared_logit[t *
// logit_stride]) * shared[t] is added to each token's sum before it goes to out, as the CPU's
// moe_ffn adds it. width even (cudaErrorInvalidValue otherwise).
cudaError_t combine_experts(const float* rows, const float* weights, int n, int k, int64_t width, float* out,
                            cudaStream_t stream, bool accumulate = false, const float* shared = nullptr,
                            const float* shared_logit = nullptr, int64_t logit_stride = 1);

// out[t] = w . x[t] for n rows of `width` values, summed in double (the shared expert's gate).
cudaError_t dot_rows(const float* x, const float* w, int n, int width, float* out, cudaStream_t stream);

// Qwen3-Next's gated attention: the query product gives each head's query and output gate side
// by side (qg [rows][2 * head_dim], rows = tokens * heads); split them into q and gate
// ([rows][head_dim] each).
cudaError_t split_gated_heads(const float* qg, int64_t rows, int head_dim, float* q, float* gate, cudaStream_t stream);

// The columns of in ([n][a + b + c]) as three blocks out = [n][a] | [n][b] | [n][c]: the output of
// one product of three stacked matrices in the layout of three products.
cudaError_t split_columns(const float* in, int n, int64_t a, int64_t b, int64_t c, float* out, cudaStream_t stream);

// x *= sigmoid(gate) over n values.
cudaError_t sigmoid_mul(float* x, const float* gate, int64_t n, cudaStream_t stream);

// Per head of n tokens, in place: RMSNorm (weights q_norm / k_norm), then NEOX RoPE of the
// first n_rot dims at position pos[t]; the keys and the values (v, untouched) are then stored in
// the cache (f16 or Q8_0, attention.h) at pos[t]. Each step is the arithmetic of rms_norm(),
// rope_neox() and store_kv(), fused: q [n][n_head][head_dim], k and v [n][n_head_kv][head_dim].
cudaError_t qk_norm_rope_store(float* q, float* k, const float* v, const float* q_norm, const float* k_norm, float eps,
                               const int32_t* pos, int n, int n_head, int n_head_kv, int head_dim, int n_rot,
                               const double* freq, KvType type, void* k_cache, void* v_cache, cudaStream_t stream);

// MoE routing, per token: softmax over its n_expert router logits, the k most probable
// experts (ties to the lower id), their probabilities (divided by their sum when
// `renormalize`). logits [n_tok][n_expert] (rows logit_stride floats apart, when not 0);
// experts and weights [n_tok][k], rank order. With shared_expert >= 0 (Qwen3-Next's shared
// expert run as one more expert), each token gets a (k + 1)-th entry: that id, weighted by
// sigmoid of the logit after the experts' (the shared expert's gate, the router's last row).
cudaError_t route_top_k(const float* logits, int n_tok, int n_expert, int k, bool renormalize, int32_t* experts,
                        float* weights, cudaStream_t stream, int64_t logit_stride = 0, int shared_expert = -1);

// Benchmarks' routing from outside the model: experts[t * width + r] = forced[t * k + r] for the
// first k entries of each of n tokens' rows of `width` (the router's weights and any shared-
// expert entry after them stay). forced may be pinned host memory.
cudaError_t force_experts(const int32_t* forced, int n, int k, int width, int32_t* experts, cudaStream_t stream);

// out[i] = row ids[i] of a matrix in `type` (rows row_stride bytes apart), as f32: the
// embedding lookup. cols a multiple of the type's block size.
cudaError_t get_rows(GgmlType type, const void* w, size_t row_stride, int64_t cols, const int32_t* ids, int n,
                     float* out, cudaStream_t stream);

}  // namespace moe::cuda
