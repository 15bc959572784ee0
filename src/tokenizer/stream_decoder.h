#pragma once
// Detokenizing one token at a time for streaming output. A token may end in the middle of a
// UTF-8 character (byte-level BPE splits rare characters and emoji into byte tokens), so text
// is only released once each character is complete.
#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace moe::tokenizer {

// Turns a byte stream into whole UTF-8 characters. Bytes that cannot become a valid character
// come out as U+FFFD (one per maximal ill-formed subpart, the Unicode/WHATWG convention) as
// soon as that is certain; a valid but unfinished sequence is held back until it completes or
// finish() is called.
class Utf8StreamAssembler {
 public:
  // Returns the text that is complete after adding `bytes`.
  std::string push(std::string_view bytes);
  // Returns whatever is held back, as U+FFFD, and resets.
  std::string finish();
  // Bytes held back waiting for the rest of a character (0..3).
  size_t pending() const { return pending_.size(); }

 private:
  std::string pending_;
};

class StreamDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {})
      : tokenizer_(tokenizer), options_(options) {}

  // Throws moe::Error for an id outside the vocabulary.
  std::string push(TokenId token) { return assembler_.push(tokenizer_.piece(token, options_.render_special)); }
  std::string finish() { return assembler_.finish(); }

 private:
  const Tokenizer& tokenizer_;
  DecodeOptions options_;
  Utf8StreamAssembler assembler_;
};

}  // namespace moe::tokenizer
