#include "engine/kv_cache.h"

#include <cstring>
#include <utility>

#include "core/error.h"
#include "core/units.h"
#include "ops/cpu/quantize.h"

namespace moe {

KvCache::KvCache(int n_layers, int64_t row_values, GgmlType type, int64_t max_tokens)
    : n_layers_(n_layers), row_values_(row_values), type_(type) {
  if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::Q8_0 && type != GgmlType::Q4_0) {
    fail("KV cache type {} is not supported (use f32, f16, q8_0 or q4_0)", type_name(type));
  }
  if (row_values % block_size(type) != 0) {
    fail("KV cache type {} needs rows that are a multiple of {} values; this model's are {}", type_name(type),
         block_size(type), row_values);
  }
  row_bytes_ = row_bytes(type, uint64_t(row_values));
  block_bytes_ = size_t(n_layers) * 2 * kBlockTokens * row_bytes_;
  const int64_t n_blocks = (max_tokens + kBlockTokens - 1) / kBlockTokens;
  storage_.resize(size_t(n_blocks) * block_bytes_);
  free_.reserve(size_t(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(int(b));  // hand out block 0 first
}

int KvCache::allocate_block() {
  if (free_.empty()) {
    fail("the KV cache is full ({} positions, {}); raise the context size (-c)",
         storage_.size() / block_bytes_ * kBlockTokens, format_bytes(storage_.size()));
  }
  const int b = free_.back();
  free_.pop_back();
  return b;
}

void KvCache::release_block(int block) { free_.push_back(block); }

std::byte* KvCache::row_ptr(int block, int slot, int layer, bool value) {
  MOE_ASSERT(layer >= 0 && layer < n_layers_ && slot >= 0 && slot < kBlockTokens);
  return storage_.data() + size_t(block) * block_bytes_ +
         ((size_t(layer) * 2 + (value ? 1 : 0)) * kBlockTokens + size_t(slot)) * row_bytes_;
}

const std::byte* KvCache::row_ptr(int block, int slot, int layer, bool value) const {
  return const_cast<KvCache*>(this)->row_ptr(block, slot, layer, value);
}

void KvCache::write(int block, int slot, int layer, bool value, std::span<const float> row) {
  quantize_row(type_, row, std::span(row_ptr(block, slot, layer, value), row_bytes_));
}

void KvCache::copy_block(int from, int to) {
  std::memcpy(storage_.data() + size_t(to) * block_bytes_, storage_.data() + size_t(from) * block_bytes_, block_bytes_);
}

void KvCache::read(int block, int slot, int layer, bool value, std::span<float> row) const {
  dequantize_row(type_, std::span(row_ptr(block, slot, layer, value), row_bytes_), row);
}

SequenceState::~SequenceState() {
  if (cache_) {
    for (int b : blocks_) cache_->release_block(b);
  }
}

SequenceState::SequenceState(SequenceState&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)),
      blocks_(std::move(other.blocks_)),
      length_(other.length_),
      recurrent_(std::move(other.recurrent_)),
      recurrent_length_(other.recurrent_length_) {}

std::span<float> SequenceState::recurrent(size_t floats) {
  if (recurrent_.empty()) recurrent_.assign(floats, 0.0f);
  MOE_ASSERT(recurrent_.size() == floats);
  return recurrent_;
}

SequenceState SequenceState::fork() const {
  SequenceState copy(*cache_);
  copy.grow(length_);  // throws before anything is copied if the cache is too full
  for (size_t i = 0; i < blocks_.size() && i < copy.blocks_.size(); ++i) cache_->copy_block(blocks_[i], copy.blocks_[i]);
  copy.recurrent_ = recurrent_;
  copy.recurrent_length_ = recurrent_length_;
  return copy;
}

void SequenceState::grow(int64_t new_length) {
  while (int64_t(blocks_.size()) * KvCache::kBlockTokens < new_length) blocks_.push_back(cache_->allocate_block());
  length_ = std::max(length_, new_length);
}

void SequenceState::truncate(int64_t new_length) {
  length_ = std::min(length_, new_length);
  const size_t keep = size_t((length_ + KvCache::kBlockTokens - 1) / KvCache::kBlockTokens);
  while (blocks_.size() > keep) {
    cache_->release_block(blocks_.back());
    blocks_.pop_back();
  }
}

void SequenceState::write(int64_t pos, int layer, bool value, std::span<const float> row) {
  MOE_ASSERT(pos < int64_t(blocks_.size()) * KvCache::kBlockTokens);
  cache_->write(blocks_[size_t(pos / KvCache::kBlockTokens)], int(pos % KvCache::kBlockTokens), layer, value, row);
}

void SequenceState::read(int64_t pos, int layer, bool value, std::span<float> row) const {
  MOE_ASSERT(pos < length_);
  cache_->read(blocks_[size_t(pos / KvCache::kBlockTokens)], int(pos % KvCache::kBlockTokens), layer, value, row);
}

}  // namespace moe
