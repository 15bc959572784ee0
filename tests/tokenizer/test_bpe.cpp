// BPE merge order on a hand-made vocabulary: lowest rank first, ties to the leftmost pair,
// and the byte fallback for a merge whose result is not a token.
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"

namespace moe::tokenizer {
namespace {

constexpr EncodeOptions kRaw{.add_special = false, .parse_special = false};

Tokenizer with_merges(std::vector<std::pair<std::string, std::string>> merges) {
  test::TinyVocab tiny;
  tiny.merges = std::move(merges);
  return test::tiny_tokenizer(tiny.writer());
}

TEST(Bpe, LowerRankMergesFirst) {
  const Tokenizer tok = with_merges({{"b", "c"}, {"a", "b"}});
  const Vocab& v = tok.vocab();
  EXPECT_EQ(tok.encode("abc", kRaw), (std::vector<TokenId>{v.find("a"), v.find("bc")}));
  const Tokenizer reversed = with_merges({{"a", "b"}, {"b", "c"}});
  EXPECT_EQ(reversed.encode("abc", kRaw), (std::vector<TokenId>{reversed.vocab().find("ab"), reversed.vocab().find("c")}));
}

TEST(Bpe, EqualRanksMergeLeftmostFirst) {
  const Tokenizer tok = with_merges({{"a", "a"}});
  const TokenId aa = tok.vocab().find("aa"), a = tok.vocab().find("a");
  EXPECT_EQ(tok.encode("aaa", kRaw), (std::vector<TokenId>{aa, a}));
  EXPECT_EQ(tok.encode("aaaaa", kRaw), (std::vector<TokenId>{aa, aa, a}));
}

TEST(Bpe, MergesBuildOnEarlierMerges) {
  const Tokenizer tok = with_merges({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "hello"}});
  EXPECT_EQ(tok.encode(" hello", kRaw), (std::vector<TokenId>{tok.vocab().find("\xC4\xA0hello")}));
  EXPECT_EQ(tok.decode(tok.encode(" hello hell", kRaw)), " hello hell");
}

TEST(Bpe, AMergedSymbolThatIsNotATokenFallsBackToItsBytes) {
  test::TinyVocab tiny;
  tiny.merges = {};
  auto w = tiny.writer();
  const std::vector<std::string> merges = {"x y"};  // "xy" is not in the vocabulary
  w.set_array_string("tokenizer.ggml.merges", merges);
  const Tokenizer tok = test::tiny_tokenizer(w);
  EXPECT_EQ(tok.vocab().find("xy"), kNoToken);
  EXPECT_EQ(tok.encode("xy", kRaw), (std::vector<TokenId>{'x', 'y'}));  // byte tokens are ids 0..255
  EXPECT_EQ(tok.encode("\xC3\xA9", kRaw), (std::vector<TokenId>{0xC3, 0xA9}));
}

}  // namespace
}  // namespace moe::tokenizer
