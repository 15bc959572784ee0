#pragma once
// A byte-level BPE vocabulary read from GGUF metadata (tokenizer.ggml.*): token texts and
// types, merge ranks, special tokens and the BOS/EOS rules. Everything is validated on load,
// so the tokenizer never meets an out-of-range id or a merge of unknown tokens.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/token_text_index.h"

namespace moe::gguf {
class Metadata;
}

namespace moe::tokenizer {

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// tokenizer.ggml.token_type values (llama.cpp's LLAMA_TOKEN_TYPE_*).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,      // <|im_start|>: matched in text only when parsing specials
  UserDefined = 4,  // <think>: always matched in text, rendered as itself
  Unused = 5,
  Byte = 6,
};

struct Merge {
  int32_t rank;    // index in tokenizer.ggml.merges: lower merges first
  TokenId result;  // the merged token, or kNoToken if the vocabulary lacks it
};

class Vocab {
 public:
  // Throws moe::Error naming the key (and index) of anything missing or inconsistent.
  static Vocab from_gguf(const gguf::Metadata& metadata);

  // Large (megabytes): move it, never copy it by accident.
  Vocab(Vocab&&) noexcept = default;
  Vocab& operator=(Vocab&&) noexcept = default;
  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  size_t size() const { return texts_.size(); }
  bool contains(TokenId id) const { return id >= 0 && size_t(id) < texts_.size(); }
  std::string_view text(TokenId id) const { return texts_[size_t(id)]; }
  TokenType type(TokenId id) const { return types_[size_t(id)]; }
  TokenId find(std::string_view text) const { return TokenId(token_ids_.find(text, texts_)); }  // kNoToken if absent

  size_t n_merges() const { return n_merges_; }
  const Merge* find_merge(TokenId left, TokenId right) const;
  // The token of the single byte `b` (its byte-to-unicode character), or kNoToken.
  TokenId byte_token(uint8_t b) const { return byte_tokens_[b]; }

  // CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first (ties by id): the order in
  // which they are searched for in raw text.
  std::span<const TokenId> special_tokens() const { return special_tokens_; }

  const PreTokenizerSpec& pre_tokenizer() const { return *pre_; }
  TokenId bos() const { return bos_; }  // kNoToken if the file names none
  TokenId eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }

 private:
  Vocab() = default;
  void load_tokens(const gguf::Metadata& metadata);
  void load_merges(const gguf::Metadata& metadata);
  void load_special_ids(const gguf::Metadata& metadata);

  static uint64_t pair_key(TokenId left, TokenId right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
  size_t merge_slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> merge_shift_); }

  // Merges in an open-addressing table (linear probing, at most 3/4 full): BPE looks up a
  // pair for every adjacent symbol pair of every word, and one probe into a flat array costs a
  // fraction of a node-based std::unordered_map lookup.
  struct MergeSlot {
    uint64_t key = kEmptyKey;
    Merge merge{};
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t(0);  // ids are >= 0, so no real pair has it

  std::vector<std::string> texts_;
  std::vector<TokenType> types_;
  TokenTextIndex token_ids_;
  std::vector<MergeSlot> merge_slots_;
  int merge_shift_ = 64;
  size_t n_merges_ = 0;
  std::array<TokenId, 256> byte_tokens_{};
  std::vector<TokenId> special_tokens_;
  const PreTokenizerSpec* pre_ = nullptr;
  TokenId bos_ = kNoToken;
  TokenId eos_ = kNoToken;
  bool add_bos_ = false;
  bool add_eos_ = false;
};

std::string_view token_type_name(TokenType type);

}  // namespace moe::tokenizer
