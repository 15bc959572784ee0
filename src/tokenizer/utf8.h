#pragma once
// UTF-8 decoding by the rules of Unicode's Table 3-7 (well-formed byte sequences): no overlong
// forms, no surrogates, nothing above U+10FFFF. Shared by the pre-tokenizer, which needs valid
// input for PCRE2, and the streaming detokenizer, which must tell "incomplete" from "invalid".
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moe::tokenizer {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

struct Utf8Step {
  enum class Kind {
    Valid,       // the first `length` bytes encode `codepoint`
    Incomplete,  // all bytes so far are a valid prefix; more are needed (length = bytes seen)
    Invalid,     // the first `length` bytes are a maximal ill-formed subpart: one U+FFFD replaces them
  };
  Kind kind;
  uint32_t codepoint;
  size_t length;
};

// Decodes the sequence starting at bytes[0]; `bytes` must not be empty.
Utf8Step decode_utf8(std::string_view bytes);

bool is_valid_utf8(std::string_view bytes);

void append_utf8(std::string& out, uint32_t codepoint);

// Replaces every byte that does not start a well-formed sequence with U+FFFD, one per byte, as
// llama.cpp does before pre-tokenizing (byte-level BPE could keep such bytes, but matching
// llama.cpp's token ids matters more).
std::string replace_invalid_utf8_bytewise(std::string_view bytes);

}  // namespace moe::tokenizer
