#include "tokenizer/utf8.h"

namespace moe::tokenizer {
namespace {

bool is_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace

Utf8Step decode_utf8(std::string_view bytes) {
  const auto lead = uint8_t(bytes[0]);
  if (lead < 0x80) return {Utf8Step::Kind::Valid, lead, 1};

  // Sequence length, the initial code point bits and the allowed range of the second byte;
  // the narrower second-byte ranges are what exclude overlongs, surrogates and > U+10FFFF.
  size_t length = 0;
  uint32_t codepoint = 0;
  uint8_t second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, codepoint = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, codepoint = lead & 0x0F;
    if (lead == 0xE0) second_min = 0xA0;
    if (lead == 0xED) second_max = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, codepoint = lead & 0x07;
    if (lead == 0xF0) second_min = 0x90;
    if (lead == 0xF4) second_max = 0x8F;
  } else {
    return {Utf8Step::Kind::Invalid, 0, 1};  // 80..C1 or F5..FF can never start a sequence
  }

  for (size_t i = 1; i < length; ++i) {
    if (i >= bytes.size()) return {Utf8Step::Kind::Incomplete, 0, i};
    const auto b = uint8_t(bytes[i]);
    const bool ok = i == 1 ? (b >= second_min && b <= second_max) : is_continuation(b);
    if (!ok) return {Utf8Step::Kind::Invalid, 0, i};
    codepoint = (codepoint << 6) | (b & 0x3F);
  }
  return {Utf8Step::Kind::Valid, codepoint, length};
}

bool is_valid_utf8(std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    // ASCII runs are the common case; skip them without the full decoder.
    if (uint8_t(bytes[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Utf8Step step = decode_utf8(bytes.substr(pos));
    if (step.kind != Utf8Step::Kind::Valid) return false;
    pos += step.length;
  }
  return true;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::string replace_invalid_utf8_bytewise(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 8);
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Utf8Step step = decode_utf8(bytes.substr(pos));
    if (step.kind == Utf8Step::Kind::Valid) {
      out.append(bytes.substr(pos, step.length));
      pos += step.length;
    } else {
      out.append(kReplacementCharacter);
      ++pos;
    }
  }
  return out;
}

}  // namespace moe::tokenizer
