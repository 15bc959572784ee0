#pragma once
// Pre-tokenizers: the regexes that cut text into words before BPE, one per family of
// `tokenizer.ggml.pre` values, with the per-name defaults llama.cpp attaches to them.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pcre2_regex.h"

namespace moe::tokenizer {

enum class PreTokenizerType {
  Gpt2,    // GPT-2: ` ?\p{L}+`, ` ?\p{N}+`, ...
  Llama3,  // Llama 3: numbers in groups of up to three digits
  Qwen2,   // Qwen2/Qwen3: the Llama 3 regex with single digits
  Qwen35,  // Qwen3.5: Qwen2 with combining marks (\p{M}) kept inside words
};

// What a `tokenizer.ggml.pre` value selects.
struct PreTokenizerSpec {
  std::string_view name;  // the value as written in the file
  PreTokenizerType type;
  bool ignore_merges;     // a word that is already a token is emitted whole, without BPE
  bool add_bos;           // default when tokenizer.ggml.add_bos_token is absent
};

// Throws moe::Error naming `name` and listing the supported values.
const PreTokenizerSpec& find_pre_tokenizer(std::string_view name);
// "gpt-2, phi-2, ..., qwen35": every accepted `tokenizer.ggml.pre` value.
std::string supported_pre_tokenizer_names();

// The regex as llama.cpp writes it (before our whitespace rewrite).
std::string_view pre_tokenizer_regex(PreTokenizerType type);

class PreTokenizer {
 public:
  explicit PreTokenizer(PreTokenizerType type);

  PreTokenizerType type() const { return type_; }
  bool jit_compiled() const { return regex_.jit_compiled(); }

  // Calls on_word(std::string_view) for each word of `text` (valid UTF-8), in order; the
  // words concatenate back to `text`. No list of words is built, which matters for long input.
  template <typename OnWord>
  void for_each_word(std::string_view text, OnWord&& on_word) const;

  // The same, appending the words to `words`.
  void split(std::string_view text, std::vector<std::string_view>& words) const {
    for_each_word(text, [&](std::string_view word) { words.push_back(word); });
  }

 private:
  PreTokenizerType type_;
  Pcre2Regex regex_;
};

template <typename OnWord>
void PreTokenizer::for_each_word(std::string_view text, OnWord&& on_word) const {
  Pcre2Regex::Scanner scanner(regex_, text);
  size_t pos = 0, begin = 0, end = 0;
  while (pos < text.size() && scanner.find(pos, &begin, &end)) {
    // Every character matches some alternative of these regexes, so there is no gap; a gap is
    // still passed on as a word of its own (as llama.cpp's std::regex splitter does) so that no
    // text is ever dropped.
    if (begin > pos) on_word(text.substr(pos, begin - pos));
    if (end == begin) {
      // No alternative matches the empty string; should one ever, step over one character.
      end = begin + 1;
      while (end < text.size() && (uint8_t(text[end]) & 0xC0) == 0x80) ++end;
    }
    on_word(text.substr(begin, end - begin));
    pos = end;
  }
  if (pos < text.size()) on_word(text.substr(pos));
}

}  // namespace moe::tokenizer
