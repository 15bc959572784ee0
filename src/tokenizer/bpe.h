#pragma once
// Byte-pair merging of one pre-tokenized word, as llama.cpp's llm_tokenizer_bpe_session does:
// start from the word's characters in the byte-to-unicode alphabet (one per byte), repeatedly
// merge the adjacent pair with the lowest merge rank (ties: the leftmost pair), then emit each
// symbol's token, or its bytes' tokens if the merged symbol is not itself in the vocabulary.
// Merges are looked up by token id pair, so the word is worked on as raw bytes and never
// needs spelling out in the byte alphabet.
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace moe::tokenizer {

class BpeWordEncoder {
 public:
  explicit BpeWordEncoder(const Vocab& vocab) : vocab_(vocab) {}

  // Appends the token ids of one word (raw bytes, as the pre-tokenizer cut it).
  void encode(std::string_view word, std::vector<TokenId>& out);

 private:
  // A run of bytes of the word, in a doubly linked list of the live symbols.
  struct Symbol {
    uint32_t begin;  // offset in the word
    uint32_t size;   // 0 once merged into the symbol on its left
    TokenId id;      // kNoToken if the vocabulary lacks the text: it then never merges again
    int32_t prev;
    int32_t next;
  };
  // A candidate merge of symbols[left] and symbols[right], valid while both still hold the ids
  // they had when it was queued.
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t right;
    TokenId left_id;
    TokenId right_id;
    TokenId result;
  };

  void queue_pair(int32_t left, int32_t right);
  void emit_symbol(std::string_view bytes, TokenId id, std::vector<TokenId>& out) const;

  const Vocab& vocab_;
  // Reused across words to avoid reallocating for each one.
  std::vector<Symbol> symbols_;
  std::vector<Candidate> heap_;
};

}  // namespace moe::tokenizer
