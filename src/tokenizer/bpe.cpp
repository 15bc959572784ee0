#include "tokenizer/bpe.h"

#include <algorithm>

#include "core/error.h"

namespace moe::tokenizer {
namespace {

// std heap order: the "largest" element is popped first, so invert (rank, left).
bool pops_later(int32_t rank_a, int32_t left_a, int32_t rank_b, int32_t left_b) {
  return rank_a > rank_b || (rank_a == rank_b && left_a > left_b);
}

}  // namespace

void BpeWordEncoder::queue_pair(int32_t left, int32_t right) {
  if (left < 0 || right < 0) return;
  const TokenId left_id = symbols_[size_t(left)].id, right_id = symbols_[size_t(right)].id;
  if (left_id == kNoToken || right_id == kNoToken) return;
  const Merge* merge = vocab_.find_merge(left_id, right_id);
  if (!merge) return;
  heap_.push_back({merge->rank, left, right, left_id, right_id, merge->result});
  std::push_heap(heap_.begin(), heap_.end(),
                 [](const Candidate& a, const Candidate& b) { return pops_later(a.rank, a.left, b.rank, b.left); });
}

void BpeWordEncoder::encode(std::string_view word, std::vector<TokenId>& out) {
  MOE_ASSERT(word.size() < UINT32_MAX);
  symbols_.clear();
  heap_.clear();
  for (size_t pos = 0; pos < word.size(); ++pos) {
    const auto index = int32_t(pos);
    symbols_.push_back({uint32_t(pos), 1, vocab_.byte_token(uint8_t(word[pos])), index - 1, index + 1});
  }
  if (symbols_.empty()) return;
  symbols_.back().next = -1;
  for (int32_t i = 1; i < int32_t(symbols_.size()); ++i) queue_pair(i - 1, i);

  const auto order = [](const Candidate& a, const Candidate& b) { return pops_later(a.rank, a.left, b.rank, b.left); };
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), order);
    const Candidate c = heap_.back();
    heap_.pop_back();
    Symbol& left = symbols_[size_t(c.left)];
    Symbol& right = symbols_[size_t(c.right)];
    // Stale: one side has merged with something else since this pair was queued.
    if (left.size == 0 || right.size == 0 || left.next != c.right || left.id != c.left_id || right.id != c.right_id) {
      continue;
    }
    left.size += right.size;
    left.id = c.result;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols_[size_t(right.next)].prev = c.left;
    queue_pair(left.prev, c.left);
    queue_pair(c.left, left.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols_[size_t(i)].next) {
    const Symbol& s = symbols_[size_t(i)];
    emit_symbol(word.substr(s.begin, s.size), s.id, out);
  }
}

void BpeWordEncoder::emit_symbol(std::string_view bytes, TokenId id, std::vector<TokenId>& out) const {
  if (id != kNoToken) {
    out.push_back(id);
    return;
  }
  // The merged text is not a token: fall back to one token per byte. (llama.cpp looks up the
  // single UTF-8 bytes of the byte-alphabet spelling instead, which finds nothing for bytes
  // spelt above U+007F and drops them. A byte without a token is dropped here too; Vocab warns
  // about such vocabularies when loading.)
  for (const char b : bytes) {
    const TokenId byte_token = vocab_.byte_token(uint8_t(b));
    if (byte_token != kNoToken) out.push_back(byte_token);
  }
}

}  // namespace moe::tokenizer
