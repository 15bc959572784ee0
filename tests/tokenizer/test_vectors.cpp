// llama.cpp's tokenizer test vectors (tests/test-tokenizer-0): every case of every vocabulary
// must give exactly the recorded ids (no BOS, CONTROL tokens not parsed, as that test runs).
#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>

#include "tokenizer_test_util.h"

namespace moe::tokenizer {
namespace {

struct VocabVectors {
  const char* name;
  size_t expected_cases;  // guards against a truncated or mis-split fixture

  friend void PrintTo(const VocabVectors& v, std::ostream* os) { *os << v.name; }
};

class TokenizerVectors : public ::testing::TestWithParam<VocabVectors> {};

std::string escaped(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  return out;
}

TEST_P(TokenizerVectors, EveryCaseMatchesLlamaCpp) {
  const auto& param = GetParam();
  const Tokenizer& tok = test::fixture_tokenizer(param.name);
  const auto cases = test::read_cases(param.name);
  ASSERT_EQ(cases.size(), param.expected_cases);
  size_t passed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto ids = tok.encode(cases[i].text, {.add_special = false, .parse_special = false});
    EXPECT_EQ(ids, cases[i].ids) << param.name << " case " << i << ": '" << escaped(cases[i].text) << "'";
    passed += ids == cases[i].ids;
  }
  RecordProperty("passed", int(passed));
  std::printf("%s: %zu/%zu vectors pass\n", param.name, passed, cases.size());
}

TEST_P(TokenizerVectors, DecodingTheExpectedIdsGivesBackTheText) {
  const auto& param = GetParam();
  const Tokenizer& tok = test::fixture_tokenizer(param.name);
  for (const auto& c : test::read_cases(param.name)) {
    EXPECT_EQ(tok.decode(c.ids), c.text) << "'" << escaped(c.text) << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, TokenizerVectors,
                         ::testing::Values(VocabVectors{"qwen2", 46}, VocabVectors{"qwen35", 50},
                                           VocabVectors{"llama-bpe", 46}, VocabVectors{"gpt-2", 46}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(TokenizerVectorsFile, SplitRuleKeepsEmptyCasesAndAddsNoTrailingOne) {
  const auto cases = test::read_cases("qwen2");
  ASSERT_GE(cases.size(), 4u);
  EXPECT_EQ(cases[0].text, "ied 4 \xC2\xBD months");
  EXPECT_EQ(cases[2].text, "");  // an empty case between two separators
  EXPECT_TRUE(cases[2].ids.empty());
  EXPECT_EQ(cases[3].text, " ");
  EXPECT_FALSE(cases.back().text.empty());
}

}  // namespace
}  // namespace moe::tokenizer
