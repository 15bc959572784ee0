// Properties that must hold on multilingual text for every vocabulary: exact round trips,
// pre-token splits that cover the input, and the digit/whitespace/mark rules of each regex.
// These check that PCRE2's Unicode tables give the categories the regexes rely on.
#include <gtest/gtest.h>

#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace moe::tokenizer {
namespace {

// Samples in many scripts, with the awkward cases spelt out as escapes.
const std::vector<std::string> kSamples = {
    "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\xE5\x8C\x97\xE4\xBA\xAC\xE5\xB7\xA5\xE4\xBD\x9C\xE3\x80\x82",  // Chinese
    "\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xAF\xE3\x82\xAB\xE3\x82\xBF\xE3\x82\xAB\xE3\x83\x8A\xE3\x81\xA8\xE3\x81\xB2\xE3\x82\x89\xE3\x81\x8C\xE3\x81\xAA",  // Japanese
    "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xED\x85\x8C\xEC\x8A\xA4\xED\x8A\xB8\xEC\x9E\x85\xEB\x8B\x88\xEB\x8B\xA4",  // Korean
    "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD8\xA8\xD8\xA7\xD9\x84\xD8\xB9\xD8\xA7\xD9\x84\xD9\x85 \xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4\xD9\xA5\xD9\xA6\xD9\xA7",  // Arabic, Arabic-Indic digits 1234567
    "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87 \xE0\xA4\xA6\xE0\xA5\x81\xE0\xA4\xA8\xE0\xA4\xBF\xE0\xA4\xAF\xE0\xA4\xBE \xE0\xA5\xA8\xE0\xA5\xA6\xE0\xA5\xA8\xE0\xA5\xAA",  // Hindi with marks, Devanagari digits 2024
    "\xF0\x9F\x91\xA9\xF0\x9F\x8F\xBD\xE2\x80\x8D\xF0\x9F\x92\xBB \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBF \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",  // ZWJ, skin tones, flag
    "Cafe\xCC\x81 re\xCC\x81sume\xCC\x81 nai\xCC\x88ve",  // accented Latin in NFD
    "Caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m",    // the same in NFC
    "line one\r\nline two\r\n\r\n\tindented\xC2\xA0nbsp\xE2\x80\xAFnarrow\xE3\x80\x80ideographic  \n",  // whitespace
    "x = 1234567890; y = 3.14159; z = 1e-10; \xE2\x85\xA0\xE2\x85\xA1 \xC2\xBD",  // numbers, roman numerals, fractions
    "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xCE\xBA\xCF\x8C\xCF\x83\xCE\xBC\xCE\xB5! \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D",  // Cyrillic, Greek, Hebrew
    "It's 'quoted' and WE'LL see; they'RE here",  // contractions in any case
};

constexpr EncodeOptions kPlain{.add_special = false, .parse_special = false};

class UnicodeProperties : public ::testing::TestWithParam<const char*> {};

TEST_P(UnicodeProperties, DecodeOfEncodeIsByteExact) {
  const Tokenizer& tok = test::fixture_tokenizer(GetParam());
  for (const auto& s : kSamples) {
    EXPECT_EQ(tok.decode(tok.encode(s, kPlain)), s) << s;
    // With BOS/EOS added as the vocabulary asks, and dropped again when decoding.
    EXPECT_EQ(tok.decode(tok.encode(s), {.render_special = false}), s) << s;
  }
  std::string all;
  for (const auto& s : kSamples) all += s + "\n";
  EXPECT_EQ(tok.decode(tok.encode(all, kPlain)), all);
}

TEST_P(UnicodeProperties, PreTokensConcatenateBackToTheInput) {
  const Tokenizer& tok = test::fixture_tokenizer(GetParam());
  for (const auto& s : kSamples) {
    std::vector<std::string_view> words;
    tok.pre_tokenizer().split(s, words);
    std::string joined;
    for (const auto w : words) {
      EXPECT_FALSE(w.empty());
      EXPECT_TRUE(is_valid_utf8(w)) << "a word splits a character in: " << s;
      joined += w;
    }
    EXPECT_EQ(joined, s);
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, UnicodeProperties, ::testing::Values("qwen2", "qwen35", "llama-bpe", "gpt-2"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

std::vector<std::string> split(PreTokenizerType type, std::string_view text) {
  const PreTokenizer pre(type);
  std::vector<std::string_view> words;
  pre.split(text, words);
  return {words.begin(), words.end()};
}

using Words = std::vector<std::string>;

TEST(PreTokenizerRules, Qwen2SplitsNumbersIntoSingleDigitsOfAnyScript) {
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "x 1234"), (Words{"x", " ", "1", "2", "3", "4"}));
  // Arabic-Indic ١٢٣ and Devanagari २०: \p{N} beyond ASCII.
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "\xD9\xA1\xD9\xA2\xD9\xA3\xE0\xA5\xA8\xE0\xA5\xA6"),
            (Words{"\xD9\xA1", "\xD9\xA2", "\xD9\xA3", "\xE0\xA5\xA8", "\xE0\xA5\xA6"}));
}

TEST(PreTokenizerRules, Llama3GroupsDigitsByThree) {
  EXPECT_EQ(split(PreTokenizerType::Llama3, "1234567"), (Words{"123", "456", "7"}));
  EXPECT_EQ(split(PreTokenizerType::Llama3, "\xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4"),
            (Words{"\xD9\xA1\xD9\xA2\xD9\xA3", "\xD9\xA4"}));
  const Tokenizer& tok = test::fixture_tokenizer("llama-bpe");
  for (const auto& s : kSamples) {
    std::vector<std::string_view> words;
    tok.pre_tokenizer().split(s, words);
    for (const auto w : words) {
      if (w.find_first_of("0123456789") != std::string_view::npos && w.find_first_not_of("0123456789") == std::string_view::npos) {
        EXPECT_LE(w.size(), 3u) << w;
      }
    }
  }
}

TEST(PreTokenizerRules, Gpt2KeepsDigitRunsWithALeadingSpace) {
  EXPECT_EQ(split(PreTokenizerType::Gpt2, "a 1234567"), (Words{"a", " 1234567"}));
}

TEST(PreTokenizerRules, NewlinesAndUnicodeSpaces) {
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "a\r\nb"), (Words{"a", "\r\n", "b"}));
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "a  \r\n\r\n  b"), (Words{"a", "  \r\n\r\n", " ", " b"}));
  // NO-BREAK SPACE is \s, so it leads the next word like a space would.
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "a\xC2\xA0" "b"), (Words{"a", "\xC2\xA0" "b"}));
  // Trailing spaces stay one word; before a word the last space joins the word.
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "a   b   "), (Words{"a", "  ", " b", "   "}));
  EXPECT_EQ(split(PreTokenizerType::Gpt2, "a   b   "), (Words{"a", "  ", " b", "   "}));
}

TEST(PreTokenizerRules, MongolianVowelSeparatorIsNotWhitespace) {
  // U+180E left White_Space in Unicode 6.3; PCRE2's own \s still has it, llama.cpp does not.
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "a \xE1\xA0\x8E!"), (Words{"a", " \xE1\xA0\x8E!"}));
}

TEST(PreTokenizerRules, LettersAndDigitsAssignedAfterUnicode14CountAsLlamaCppCountsThem) {
  // KAWI LETTER A (U+11F04) and a CJK Extension H ideograph (U+31350) are letters in
  // llama.cpp's Unicode 15.1 tables; PCRE2 10.42 alone would see unassigned code points.
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "a\xF0\x91\xBC\x84" "b \xF0\xB1\x8D\x90\xF0\xB1\x8D\x91"),
            (Words{"a\xF0\x91\xBC\x84" "b", " \xF0\xB1\x8D\x90\xF0\xB1\x8D\x91"}));
  // KAWI DIGIT ZERO and ONE (U+11F50, U+11F51): single digits for Qwen2, one group for Llama 3.
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "\xF0\x91\xBD\x90\xF0\x91\xBD\x91"), (Words{"\xF0\x91\xBD\x90", "\xF0\x91\xBD\x91"}));
  EXPECT_EQ(split(PreTokenizerType::Llama3, "\xF0\x91\xBD\x90\xF0\x91\xBD\x91"), (Words{"\xF0\x91\xBD\x90\xF0\x91\xBD\x91"}));
  // KANNADA SIGN COMBINING ANUSVARA ABOVE RIGHT (U+0CF3) is a mark: Qwen3.5 keeps it in the word.
  EXPECT_EQ(split(PreTokenizerType::Qwen35, "\xE0\xB2\x95\xE0\xB3\xB3"), (Words{"\xE0\xB2\x95\xE0\xB3\xB3"}));
}

TEST(PreTokenizerRules, Qwen35KeepsCombiningMarksInsideWords) {
  const std::string hindi = "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87";  // नमस्ते
  EXPECT_EQ(split(PreTokenizerType::Qwen35, hindi + " " + hindi), (Words{hindi, " " + hindi}));
  EXPECT_EQ(split(PreTokenizerType::Qwen35, "re\xCC\x81sume\xCC\x81"), (Words{"re\xCC\x81sume\xCC\x81"}));
  // Qwen2's \p{L}+ stops at a mark; the mark then leads the next letters.
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "re\xCC\x81sume\xCC\x81"), (Words{"re", "\xCC\x81sume", "\xCC\x81"}));
}

TEST(PreTokenizerRules, ContractionsAreCaseInsensitiveExceptForGpt2) {
  EXPECT_EQ(split(PreTokenizerType::Qwen2, "WE'LL"), (Words{"WE", "'LL"}));
  EXPECT_EQ(split(PreTokenizerType::Llama3, "they'Re"), (Words{"they", "'Re"}));
  EXPECT_EQ(split(PreTokenizerType::Gpt2, "WE'LL we'll"), (Words{"WE", "'", "LL", " we", "'ll"}));
}

TEST(Encoding, InvalidUtf8IsEncodedAsReplacementCharactersLikeLlamaCpp) {
  const Tokenizer& tok = test::fixture_tokenizer("qwen2");
  EXPECT_EQ(tok.decode(tok.encode("a\xFF" "b\xE4\xBD", kPlain)), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(Encoding, VeryLongRunsOfOneClassDoNotExhaustTheRegexEngine) {
  const Tokenizer& tok = test::fixture_tokenizer("qwen2");
  for (const char c : {' ', 'a', '1', '!', '\n'}) {
    const std::string s(1 << 20, c);
    EXPECT_EQ(tok.decode(tok.encode(s, kPlain)), s) << int(c);
  }
}

}  // namespace
}  // namespace moe::tokenizer
