// UTF-8 decoding rules and GPT-2's byte <-> unicode table.
#include <gtest/gtest.h>

#include <set>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/utf8.h"

namespace moe::tokenizer {
namespace {

TEST(Utf8, DecodesEachLengthAndRejectsWhatTable3_7Forbids) {
  EXPECT_EQ(decode_utf8("A").codepoint, 0x41u);
  const Utf8Step e_acute = decode_utf8("\xC3\xA9");
  EXPECT_EQ(e_acute.kind, Utf8Step::Kind::Valid);
  EXPECT_EQ(e_acute.codepoint, 0xE9u);
  EXPECT_EQ(decode_utf8("\xE2\x82\xAC").codepoint, 0x20ACu);
  EXPECT_EQ(decode_utf8("\xF0\x9F\xA6\x99").codepoint, 0x1F999u);
  EXPECT_EQ(decode_utf8("\xF0\x9F\xA6").kind, Utf8Step::Kind::Incomplete);
  for (const char* bad : {"\x80", "\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF5", "\xFF"}) {
    EXPECT_EQ(decode_utf8(bad).kind, Utf8Step::Kind::Invalid) << bad;
  }
  EXPECT_EQ(decode_utf8("\xE4\xBD" "a").length, 2u);  // the maximal subpart before 'a'
}

TEST(Utf8, ReplacesInvalidBytesOneByOne) {
  EXPECT_EQ(replace_invalid_utf8_bytewise("a\xE4\xBD" "b\xC3\xA9"), "a\xEF\xBF\xBD\xEF\xBF\xBD" "b\xC3\xA9");
  EXPECT_TRUE(is_valid_utf8("plain \xC3\xA9 \xF0\x9F\xA6\x99"));
  EXPECT_FALSE(is_valid_utf8("cut \xF0\x9F\xA6"));
}

TEST(ByteUnicode, TableIsAReversibleMapOntoPrintableCodePoints) {
  std::set<uint32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = byte_to_codepoint(uint8_t(b));
    EXPECT_TRUE(seen.insert(cp).second) << b;
    EXPECT_EQ(codepoint_to_byte(cp), b);
    std::string decoded;
    EXPECT_TRUE(append_byte_decoded(decoded, byte_to_utf8(uint8_t(b))));
    EXPECT_EQ(decoded, std::string(1, char(b)));
  }
  EXPECT_EQ(byte_to_codepoint('A'), uint32_t('A'));
  EXPECT_EQ(byte_to_codepoint(' '), 0x120u);  // 'Ġ'
  EXPECT_EQ(byte_to_codepoint('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_to_codepoint(0xAD), 0x143u);  // the last shifted byte
  EXPECT_EQ(codepoint_to_byte(0x144), -1);
  EXPECT_EQ(codepoint_to_byte(0x4E00), -1);
}

TEST(ByteUnicode, EncodeThenDecodeIsIdentityOnAnyBytes) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  std::string encoded, decoded;
  append_byte_encoded(encoded, all);
  EXPECT_TRUE(is_valid_utf8(encoded));
  EXPECT_TRUE(append_byte_decoded(decoded, encoded));
  EXPECT_EQ(decoded, all);
  decoded.clear();
  EXPECT_FALSE(append_byte_decoded(decoded, "\xE4\xB8\x80"));  // not in the table: copied through
  EXPECT_EQ(decoded, "\xE4\xB8\x80");
}

}  // namespace
}  // namespace moe::tokenizer
