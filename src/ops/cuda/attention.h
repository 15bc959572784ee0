#pragma once
// Attention on the GPU over one sequence's KV cache, [position][n_head_kv * head_dim], in f16,
// Q8_0 or Q4_0. A paged layout comes with the server's batching.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace moe::cuda {

// How the cache keeps its values: f16, or Q8_0 / Q4_0 blocks in ggml's layout (per 32 values of
// a position an f16 scale, then 32 int8, or 16 bytes of nibbles: value j in the low nibble of
// byte j, value j + 16 in its high nibble). These are the bytes the CPU engine's q8_0 / q4_0
// cache holds, so both engines attend over the same numbers. A block never straddles two heads
// (head_dim is a multiple of 32).
enum class KvType : uint8_t { F16, Q8_0, Q4_0 };
constexpr size_t kKvQ8BlockBytes = 34, kKvQ4BlockBytes = 18;
constexpr size_t kv_row_bytes(KvType type, int64_t kv_dim) {
  switch (type) {
    case KvType::Q8_0: return size_t(kv_dim) / 32 * kKvQ8BlockBytes;
    case KvType::Q4_0: return size_t(kv_dim) / 32 * kKvQ4BlockBytes;
    default: return size_t(kv_dim) * 2;
  }
}

// Writes the keys and values of n tokens (f32 [n][kv_dim]) at positions pos[t] (device).
cudaError_t store_kv(const float* k, const float* v, int n, int kv_dim, const int32_t* pos, KvType type,
                     void* k_cache, void* v_cache, cudaStream_t stream);

// Which kernel attend() gives several query tokens: Auto takes the tensor-core kernel where it
// applies (attention_mma.h), else the CUDA-core one; tests name each. Where neither applies
// (head_dim not 64, 128 or 256; a group of query heads that does not divide 64), and for one
// token, the decode kernel runs whatever is asked.
enum class PrefillKernel : uint8_t { Auto, TensorCores, CudaCores };

// out[t][h] = softmax over p <= pos[t] of (q[t][h] . k[p][h / group] * scale) applied to v:
// causal GQA attention of n query tokens (f32 [n][n_head][head_dim], normed and rotated);
// head_dim a multiple of 32 up to 256.
cudaError_t attend(const float* q, KvType type, const void* k, const void* v, const int32_t* pos, int n, int n_head,
                   int n_head_kv, int head_dim, float scale, float* out, cudaStream_t stream,
                   PrefillKernel kernel = PrefillKernel::Auto);

// The current token's raw query, key and value, for decode attention that norms, rotates and
// stores them itself: the work of qk_norm_rope_store() (ops.h) in the attention launch, one
// query token only. Each block norms and rotates its query head and its kv head's key (q_norm,
// k_norm, eps, RoPE of the first n_rot dims with the table freq), uses the key and value of the
// current position from shared memory (as the cache keeps them: rounded to its type), and the
// first query block of each kv head writes them to the caches.
struct FreshKv {
  const float* q = nullptr;  // head h at q + h * q_stride (2 * head_dim: Qwen3-Next's gate after each query)
  int64_t q_stride = 0;
  const float* k = nullptr;  // [n_head_kv][head_dim]
  const float* v = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  float eps = 1e-6f;
  int n_rot = 0;
  const double* freq = nullptr;
  void* k_cache = nullptr;  // the caches attention reads, written at the token's position
  void* v_cache = nullptr;
};

// attend() by the decode kernel (whatever n), and what decode fuses into it: the output gated
// where `gate` is given (out *= sigmoid(gate), head h of token t at gate + (t * n_head + h) *
// gate_stride), quantized to Q8_0 where qs is (values [n][n_head * head_dim], scales [n][n_head
// * head_dim / 32], the layout of DeviceActivations), and with fresh.q set, the query, key and
// value norms, rotation and store (n must be 1; q is then unused). The bits of attend(),
// sigmoid_mul(), the Q8_0 quantization and qk_norm_rope_store(). out may be null.
struct DecodeAttention {
  const float* q = nullptr;  // [n][n_head][head_dim], normed and rotated
  KvType kv_type = KvType::F16;
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  const int32_t* pos = nullptr;
  int n = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  float scale = 1.0f;
  const float* gate = nullptr;
  int64_t gate_stride = 0;  // 0: head_dim
  float* out = nullptr;
  int8_t* qs = nullptr;
  float* scales = nullptr;
  FreshKv fresh;
  // Split-K for long contexts: `chunks` blocks per (token, head), each over an equal share of
  // its positions; the last block to finish merges them. partials: n * n_head * chunks *
  // (head_dim + 2) floats of scratch; counters: n * n_head unsigned, zero (and left zero).
  int chunks = 1;
  float* partials = nullptr;
  unsigned* counters = nullptr;
};

// The chunks for decode over a cache of `capacity` positions (a decode graph is recorded for a
// capacity, so the split may not depend on the current length): one per 64 positions, at most
// 16. Short caches are latency-bound (one block's warps walk their positions 32 at a time, a
// memory latency each), long ones want one wave of blocks: on the H200, 30B shapes, 4 chunks
// at 256 positions decode 6% faster than 1, 16 at 4096 positions 12% faster than 64.
constexpr int kMaxAttentionChunks = 16;
inline int attention_chunks(int64_t capacity) {
  constexpr int64_t kPositionsPerChunk = 64;
  return int(std::clamp<int64_t>(capacity / kPositionsPerChunk, 1, kMaxAttentionChunks));
}
cudaError_t attend_decode(const DecodeAttention& a, cudaStream_t stream);

}  // namespace moe::cuda
