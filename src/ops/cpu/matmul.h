#pragma once
// Threaded products of a weight matrix with activation rows: y[t][r] = dot(W[r], x[t]).
//
// W is rows x cols in GGUF layout (ne[0] = cols, one row = cols / block_size blocks), in any
// format with a vec_dot kernel. Activations are converted once to the weight format's
// vec_dot type. Work is split into tasks of fixed row ranges, never by thread count, and a
// token's result never depends on which other tokens share the call, so outputs are
// bit-identical for any thread count and any grouping of tokens into calls.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/ggml_type.h"
#include "core/thread_pool.h"
#include "ops/cpu/interleave.h"
#include "ops/cpu/vec_dot.h"

namespace moe {

// A weight matrix in memory (usually inside the mapped model file).
struct WeightView {
  GgmlType type;
  int64_t rows = 0;  // output features (ne[1])
  int64_t cols = 0;  // input features (ne[0]), a multiple of the format's block size
  const std::byte* data = nullptr;
  size_t row_stride = 0;  // bytes between rows; row_bytes(type, cols) for a packed tensor
  WeightLayout layout = WeightLayout::Rows;  // otherwise rows / 16 interleaved groups, no row_stride

  // A packed row-major tensor: e.g. one expert's slice of a 3-D expert tensor.
  static WeightView packed(GgmlType type, int64_t rows, int64_t cols, const std::byte* data);
  // A tensor repacked by interleave_groups() (rows a multiple of 16).
  static WeightView interleaved(GgmlType type, WeightLayout layout, int64_t rows, int64_t cols, const std::byte* data);
  // Bytes of the whole matrix as laid out.
  size_t bytes() const;
};

// Activation rows already in a vec_dot type (F32, Q8_0 or Q8_K), one row per token.
struct ActivationView {
  GgmlType type;
  int64_t cols = 0;
  int64_t n_tokens = 0;
  const std::byte* data = nullptr;
  size_t row_stride = 0;  // bytes between tokens
};

// Owns activations converted for one vec_dot type. Quantize a token once and reuse it for
// every matrix with that vec_dot type (e.g. all experts a token is routed to).
class QuantizedActivations {
 public:
  // x holds n_tokens rows of cols floats. Converts to `type` (F32, Q8_0 or Q8_K); splits the
  // work by token over the pool when given. Reuses its storage between calls.
  void quantize(GgmlType type, std::span<const float> x, int64_t n_tokens, int64_t cols, ThreadPool* pool = nullptr);
  const ActivationView& view() const { return view_; }

 private:
  std::vector<std::byte> storage_;
  ActivationView view_{GgmlType::F32};
};

// Software prefetch for decode-sized products (up to kMaxDotTokens tokens, rows layout): before
// each row, the weight bytes `bytes` ahead of it in the matrix are requested (never past its
// end). The hardware's streamers stop at every 4 KiB page, so on a server core, whose own
// bandwidth is a small share of the socket's, a matrix read from cold 4 KiB pages stalls on
// each new page; asking ahead keeps more misses in flight (the GPU machine's 16 Xeon cores,
// bench_expert_sum: 54 -> 66 GB/s of experts from 4 KiB pages, 58 -> 72 from 2 MiB pages;
// 1-8 KiB ahead all help, 4 KiB most). 0 turns it off. Process-wide; the bits of every
// product are the same either way.
constexpr size_t kDefaultWeightPrefetchBytes = 4096;  // best of 1-8 KiB on the Xeon, 1-16 threads
void set_weight_prefetch_bytes(size_t bytes);
size_t weight_prefetch_bytes();

// Rows per task: fixed, so the split never depends on the thread count. One interleaved group.
constexpr int64_t kMatmulRowsPerTask = kInterleaveRows;

// y (n_tokens x w.rows, token-major) = x (n_tokens x w.cols, f32) times W transposed.
// Throws moe::Error on mismatched sizes or a format without kernels.
void matmul(const WeightView& w, std::span<const float> x, int64_t n_tokens, std::span<float> y, ThreadPool& pool);

// Same with activations already converted to vec_dot_type(w.type).
void matmul(const WeightView& w, const ActivationView& x, std::span<float> y, ThreadPool& pool);

// One product, checked and given its kernels once, whose row ranges callers run as tasks of a
// parallel job of their own (the experts of an MoE layer). Same bits as matmul().
class RowProduct {
 public:
  RowProduct(const WeightView& w, const ActivationView& x, std::span<float> y);  // throws as matmul()
  // Rows [r0, r1) of y (laid out as above), on the calling thread. Interleaved weights take
  // whole groups: r0 and r1 multiples of 16 (or r1 = n_rows()).
  void rows(int64_t r0, int64_t r1) const;
  int64_t n_rows() const { return w_.rows; }

 private:
  WeightView w_;
  ActivationView x_;
  std::span<float> y_;
  VecDotFn dot_;
  GemmTileFn tile_;
  GroupDotFn group_dot_;
};

}  // namespace moe
