#pragma once
// Finds special tokens in raw text before anything else sees it.
#include <cstddef>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace moe::tokenizer {

// A piece of the input: either raw text [begin, end) still to be tokenized, or a special token.
struct Fragment {
  size_t begin = 0;
  size_t end = 0;
  TokenId token = kNoToken;  // kNoToken for raw text

  bool is_text() const { return token == kNoToken; }
};

// Splits `text` at the special tokens of `vocab`. As in llama.cpp, the tokens are taken one at a
// time, longest first, and each splits every raw fragment left so far at all its occurrences
// (left to right); so a longer token wins over a shorter one that overlaps it, wherever they
// are. USER_DEFINED tokens are always matched; CONTROL and UNKNOWN ones only if `parse_control`.
std::vector<Fragment> split_special_tokens(std::string_view text, const Vocab& vocab, bool parse_control);

}  // namespace moe::tokenizer
