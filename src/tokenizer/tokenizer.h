#pragma once
// Text <-> token ids for byte-level BPE vocabularies, matching llama.cpp's llama_tokenize and
// llama_detokenize for the same GGUF file.
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab.h"

namespace moe::gguf {
class Metadata;
}

namespace moe::tokenizer {

struct EncodeOptions {
  bool add_special = true;    // add BOS/EOS where the vocabulary asks for them
  bool parse_special = true;  // match CONTROL tokens in the text; false treats them as plain text
};

struct DecodeOptions {
  bool render_special = true;  // CONTROL/UNKNOWN tokens as their text; false drops them
};

class Tokenizer {
 public:
  explicit Tokenizer(Vocab vocab);
  // Reads and validates the tokenizer.ggml.* keys; throws moe::Error.
  static Tokenizer from_gguf(const gguf::Metadata& metadata);

  const Vocab& vocab() const { return vocab_; }
  const PreTokenizer& pre_tokenizer() const { return pre_tokenizer_; }

  // Any bytes are accepted; invalid UTF-8 outside special tokens is tokenized as U+FFFD, one
  // per bad byte, as llama.cpp does. Safe to call from several threads at once.
  std::vector<TokenId> encode(std::string_view text, EncodeOptions options = {}) const;

  // The bytes of the tokens, concatenated; throws moe::Error for an id outside the vocabulary.
  std::string decode(std::span<const TokenId> tokens, DecodeOptions options = {}) const;
  // The bytes of one token (possibly part of a UTF-8 character, or empty).
  std::string_view piece(TokenId id, bool render_special = true) const;

 private:
  void encode_text(std::string_view text, std::vector<TokenId>& out) const;

  Vocab vocab_;
  PreTokenizer pre_tokenizer_;
  std::vector<std::string> pieces_;  // decoded bytes of every token, built once
};

}  // namespace moe::tokenizer
