#pragma once
// The attention KV cache, kept in blocks of kBlockTokens positions so that sequences grow,
// share nothing by accident and can be dropped without moving memory; and the per-sequence
// state built on it.
//
// Each block holds, for every attention layer, kBlockTokens rows of K and of V; a row is the
// n_head_kv * head_dim values of one position, stored in the cache type (f32, f16, q8_0 or
// q4_0; quantized rows use the reference quantizer, as llama.cpp does). A sequence owns a list
// of blocks (its block table).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/ggml_type.h"

namespace moe {

class KvCache {
 public:
  static constexpr int kBlockTokens = 16;

  // n_layers attention layers, rows of row_values values, room for max_tokens positions in all.
  KvCache(int n_layers, int64_t row_values, GgmlType type, int64_t max_tokens);

  GgmlType type() const { return type_; }
  int64_t row_values() const { return row_values_; }
  size_t bytes() const { return storage_.size(); }
  int free_blocks() const { return int(free_.size()); }

  // Blocks are handed out and returned by sequences.
  int allocate_block();  // throws moe::Error when the cache is full
  void release_block(int block);

  // Writes the K or V row of position `slot` (0..kBlockTokens-1) of a block, converting from f32.
  void write(int block, int slot, int layer, bool value, std::span<const float> row);
  // Reads one row back as f32.
  void read(int block, int slot, int layer, bool value, std::span<float> row) const;
  // Copies every layer's rows of one block into another (for SequenceState::fork).
  void copy_block(int from, int to);

 private:
  std::byte* row_ptr(int block, int slot, int layer, bool value);
  const std::byte* row_ptr(int block, int slot, int layer, bool value) const;

  int n_layers_;
  int64_t row_values_;
  GgmlType type_;
  size_t row_bytes_;
  size_t block_bytes_;
  std::vector<std::byte> storage_;
  std::vector<int> free_;
};

// Everything the engine keeps for one sequence between forward passes: its positions in the
// KV cache (position p lives in blocks[p / kBlockTokens]) and, for models with recurrent
// layers (Qwen3-Next's delta-nets), their f32 state. Create one per sequence, extend it with
// forward passes, fork() it to branch (a shared prompt, a snapshot), drop it to free its blocks.
class SequenceState {
 public:
  explicit SequenceState(KvCache& cache) : cache_(&cache) {}
  ~SequenceState();
  SequenceState(SequenceState&& other) noexcept;
  SequenceState& operator=(SequenceState&&) = delete;
  SequenceState(const SequenceState&) = delete;

  int64_t length() const { return length_; }
  GgmlType cache_type() const { return cache_->type(); }  // how the cache stores K and V
  // Makes room for positions up to new_length - 1 (allocating blocks) and records the length.
  void grow(int64_t new_length);
  // Forgets positions >= new_length (keeps blocks still in use). Recurrent state cannot be
  // rewound: a model with one refuses to run a sequence truncated below its state's length.
  void truncate(int64_t new_length);

  void write(int64_t pos, int layer, bool value, std::span<const float> row);
  void read(int64_t pos, int layer, bool value, std::span<float> row) const;

  // The recurrent state, `floats` values, zero for a new sequence (allocated on first use).
  std::span<float> recurrent(size_t floats);
  std::span<float> recurrent() { return recurrent_; }  // as allocated (empty before)
  // The length the recurrent state has absorbed (set by the model after each pass).
  int64_t recurrent_length() const { return recurrent_length_; }
  void set_recurrent_length(int64_t n) { recurrent_length_ = n; }

  // A new sequence in the same cache with copies of this one's rows and state: the two then
  // go their own ways. Throws moe::Error (and allocates nothing) when the cache is too full.
  SequenceState fork() const;

 private:
  KvCache* cache_;
  std::vector<int> blocks_;
  int64_t length_ = 0;
  std::vector<float> recurrent_;
  int64_t recurrent_length_ = 0;
};

}  // namespace moe
