#pragma once
// The attention KV cache, kept in blocks of kBlockTokens positions so that sequences grow,
// share nothing by accident and can be dropped without moving memory.
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

// One sequence's positions in the cache: position p lives in blocks[p / kBlockTokens].
class KvSequence {
 public:
  explicit KvSequence(KvCache& cache) : cache_(&cache) {}
  ~KvSequence();
  KvSequence(KvSequence&& other) noexcept;
  KvSequence& operator=(KvSequence&&) = delete;
  KvSequence(const KvSequence&) = delete;

  int64_t length() const { return length_; }
  // Makes room for positions up to new_length - 1 (allocating blocks) and records the length.
  void grow(int64_t new_length);
  // Forgets positions >= new_length (keeps blocks still in use).
  void truncate(int64_t new_length);

  void write(int64_t pos, int layer, bool value, std::span<const float> row);
  void read(int64_t pos, int layer, bool value, std::span<float> row) const;

 private:
  KvCache* cache_;
  std::vector<int> blocks_;
  int64_t length_ = 0;
};

}  // namespace moe
