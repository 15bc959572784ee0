#pragma once
// Attention on the GPU over one sequence's KV cache in f16, [position][n_head_kv * head_dim].
// Quantized cache types (q8_0, q4_0) and a paged layout come with the server's batching.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace moe::cuda {

// Writes the keys and values of n tokens (f32 [n][kv_dim]) at positions pos[t] (device).
cudaError_t store_kv(const float* k, const float* v, int n, int kv_dim, const int32_t* pos, __half* k_cache,
                     __half* v_cache, cudaStream_t stream);

// out[t][h] = softmax over p <= pos[t] of (q[t][h] . k[p][h / group] * scale) applied to v:
// causal GQA attention of n query tokens (f32 [n][n_head][head_dim], normed and rotated);
// head_dim a multiple of 32 up to 256.
cudaError_t attend(const float* q, const __half* k, const __half* v, const int32_t* pos, int n, int n_head,
                   int n_head_kv, int head_dim, float scale, float* out, cudaStream_t stream);

// attend() by the decode kernel (whatever n), its output gated where `gate` is given (out *=
// sigmoid(gate), gate [n][n_head][head_dim]: Qwen3-Next) and quantized to Q8_0 where qs is
// (values [n][n_head * head_dim], scales [n][n_head * head_dim / 32], the layout of
// DeviceActivations) in the same launch: the bits of attend(), sigmoid_mul() (ops.h) and the
// Q8_0 quantization. out may be null.
cudaError_t attend_decode(const float* q, const __half* k, const __half* v, const int32_t* pos, int n, int n_head,
                          int n_head_kv, int head_dim, float scale, const float* gate, float* out, int8_t* qs,
                          float* scales, cudaStream_t stream);

}  // namespace moe::cuda
