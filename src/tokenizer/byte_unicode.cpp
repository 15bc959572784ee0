#include "tokenizer/byte_unicode.h"

#include <array>

#include "tokenizer/utf8.h"

namespace moe::tokenizer {
namespace {

struct ByteTable {
  std::array<uint32_t, 256> codepoint{};
  std::array<std::string, 256> utf8;
  std::array<int16_t, 0x144> byte_of{};  // every table code point is below U+0144

  ByteTable() {
    byte_of.fill(-1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    uint32_t next_shifted = 0x100;
    for (int b = 0; b < 256; ++b) {
      codepoint[b] = printable(b) ? uint32_t(b) : next_shifted++;
      append_utf8(utf8[b], codepoint[b]);
      byte_of[codepoint[b]] = int16_t(b);
    }
  }
};

const ByteTable& table() {
  static const ByteTable t;
  return t;
}

}  // namespace

uint32_t byte_to_codepoint(uint8_t byte) { return table().codepoint[byte]; }

std::string_view byte_to_utf8(uint8_t byte) { return table().utf8[byte]; }

int codepoint_to_byte(uint32_t codepoint) {
  const auto& t = table();
  return codepoint < t.byte_of.size() ? t.byte_of[codepoint] : -1;
}

void append_byte_encoded(std::string& out, std::string_view raw) {
  const auto& t = table();
  for (const char c : raw) out += t.utf8[uint8_t(c)];
}

bool append_byte_decoded(std::string& out, std::string_view encoded) {
  bool all_mapped = true;
  size_t pos = 0;
  while (pos < encoded.size()) {
    const Utf8Step step = decode_utf8(encoded.substr(pos));
    const size_t length = step.kind == Utf8Step::Kind::Valid ? step.length : 1;
    const int byte = step.kind == Utf8Step::Kind::Valid ? codepoint_to_byte(step.codepoint) : -1;
    if (byte >= 0) {
      out += char(byte);
    } else {
      out.append(encoded.substr(pos, length));
      all_mapped = false;
    }
    pos += length;
  }
  return all_mapped;
}

}  // namespace moe::tokenizer
