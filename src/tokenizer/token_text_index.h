#pragma once
// Token text -> id lookup over texts owned elsewhere (the Vocab's token list). Open addressing
// with linear probing in one flat array: loading a vocabulary looks texts up three times per
// merge, and tokenizing once per word, so this is hot; a node-based std::unordered_map costs
// several cache misses per lookup where this costs about one.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moe::tokenizer {

class TokenTextIndex {
 public:
  // Indexes texts[0..n). Returns -1, or the first id whose text repeats an earlier one (then
  // the index is incomplete and must not be used).
  int64_t build(std::span<const std::string> texts);

  // The id of `text`, or -1. `texts` must be the span given to build().
  int64_t find(std::string_view text, std::span<const std::string> texts) const;

 private:
  struct Slot {
    uint32_t hash = 0;  // high bits of the text's hash, to skip most text comparisons
    int32_t id = -1;    // -1: empty
  };
  size_t home(size_t hash) const { return (hash * 0x9E3779B97F4A7C15ull) >> shift_; }

  std::vector<Slot> slots_;
  int shift_ = 64;
};

}  // namespace moe::tokenizer
