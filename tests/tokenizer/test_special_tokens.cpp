// Special tokens in raw text, and the BOS/EOS rules.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer_test_util.h"

namespace moe::tokenizer {
namespace {

constexpr EncodeOptions kNoBos{.add_special = false, .parse_special = true};
constexpr EncodeOptions kNoBosNoSpecial{.add_special = false, .parse_special = false};

TEST(SpecialTokens, ControlTokensAreParsedOnlyWhenAsked) {
  const Tokenizer& tok = test::fixture_tokenizer("qwen2");
  const TokenId im_start = tok.vocab().find("<|im_start|>");
  ASSERT_EQ(im_start, 151644);
  EXPECT_EQ(tok.encode("<|im_start|>user\nHi", kNoBos), (std::vector<TokenId>{151644, 872, 198, 13048}));

  const auto plain = tok.encode("<|im_start|>user\nHi", kNoBosNoSpecial);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), im_start), 0);
  EXPECT_GT(plain.size(), 4u);
  EXPECT_EQ(tok.decode(plain), "<|im_start|>user\nHi");
}

TEST(SpecialTokens, UserDefinedTokensAreAlwaysParsed) {
  const Tokenizer& tok = test::fixture_tokenizer("qwen2");
  ASSERT_EQ(tok.vocab().type(151646), TokenType::UserDefined);
  const std::vector<TokenId> expected = {9707, 151646, 14615};  // "Hello", "[PAD151646]", "world"
  EXPECT_EQ(tok.encode("Hello[PAD151646]world", kNoBos), expected);
  EXPECT_EQ(tok.encode("Hello[PAD151646]world", kNoBosNoSpecial), expected);
}

TEST(SpecialTokens, LongestTokenWinsAndTextAroundIsKept) {
  const Tokenizer tok = test::tiny_tokenizer(test::TinyVocab{}.writer());
  const TokenId end = tok.vocab().find("<|end|>"), end_x = tok.vocab().find("<|end|>x");
  const TokenId think = tok.vocab().find("<think>");
  const TokenId a = tok.vocab().find("a"), y = tok.vocab().find("y");
  EXPECT_EQ(tok.encode("a<|end|>x", kNoBos), (std::vector<TokenId>{a, end_x}));
  EXPECT_EQ(tok.encode("<|end|>y<|end|>", kNoBos), (std::vector<TokenId>{end, y, end}));
  EXPECT_EQ(tok.encode("<think><think>", kNoBosNoSpecial), (std::vector<TokenId>{think, think}));
  // Control tokens off: "<|end|>x" is text, but USER_DEFINED <think> inside it still is not.
  const auto plain = tok.encode("<|end|>x", kNoBosNoSpecial);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), end_x), 0);
  EXPECT_EQ(tok.decode(plain), "<|end|>x");
}

TEST(SpecialTokens, LongerTokensAreTakenFirstEvenWhenAShorterOneStartsEarlier) {
  // llama.cpp's order: all occurrences of the longest token first, then the next one.
  test::TinyVocab tiny;
  tiny.specials = {{"AB", TokenType::UserDefined}, {"BCD", TokenType::UserDefined}};
  const Tokenizer tok = test::tiny_tokenizer(tiny.writer());
  const TokenId bcd = tok.vocab().find("BCD");
  EXPECT_EQ(tok.encode("ABCD", kNoBos), (std::vector<TokenId>{tok.vocab().find("A"), bcd}));
}

TEST(SpecialTokens, DecodeRendersOrSkipsControlTokens) {
  const Tokenizer tok = test::tiny_tokenizer(test::TinyVocab{}.writer());
  const auto ids = tok.encode("<|end|>hello<think>", kNoBos);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(tok.decode(ids), "<|end|>hello<think>");
  // USER_DEFINED tokens are text the user wrote and stay, as in llama.cpp.
  EXPECT_EQ(tok.decode(ids, {.render_special = false}), "hello<think>");
}

TEST(SpecialTokens, DecodeRejectsIdsOutsideTheVocabulary) {
  const Tokenizer tok = test::tiny_tokenizer(test::TinyVocab{}.writer());
  const std::vector<TokenId> bad = {1, TokenId(tok.vocab().size())};
  EXPECT_THROW(tok.decode(bad), Error);
  EXPECT_THROW((void)tok.piece(-1), Error);
}

TEST(BosEos, DefaultsFollowThePreTokenizerAsInLlamaCpp) {
  // Neither fixture has tokenizer.ggml.add_bos_token: llama-bpe adds BOS, qwen2 and gpt-2 do not.
  const Tokenizer& llama = test::fixture_tokenizer("llama-bpe");
  EXPECT_TRUE(llama.vocab().add_bos());
  EXPECT_EQ(llama.encode("Hello"), (std::vector<TokenId>{128000, 9906}));
  EXPECT_EQ(llama.encode("Hello", {.add_special = false}), (std::vector<TokenId>{9906}));
  EXPECT_EQ(llama.encode(""), (std::vector<TokenId>{128000}));

  EXPECT_FALSE(test::fixture_tokenizer("qwen2").vocab().add_bos());
  EXPECT_EQ(test::fixture_tokenizer("qwen2").encode("Hello"), (std::vector<TokenId>{9707}));
  EXPECT_FALSE(test::fixture_tokenizer("gpt-2").vocab().add_bos());
}

TEST(BosEos, MetadataKeysOverrideTheDefaults) {
  test::TinyVocab tiny;
  tiny.pre = "llama-bpe";
  {
    const Tokenizer tok = test::tiny_tokenizer(tiny.writer());
    EXPECT_TRUE(tok.vocab().add_bos());
    EXPECT_EQ(tok.encode("a").front(), tok.vocab().bos());
  }
  auto w = tiny.writer();
  w.set_bool("tokenizer.ggml.add_bos_token", false);
  w.set_bool("tokenizer.ggml.add_eos_token", true);
  w.set_u32("tokenizer.ggml.eos_token_id", 3);
  const Tokenizer tok = test::tiny_tokenizer(w);
  EXPECT_EQ(tok.encode("a"), (std::vector<TokenId>{tok.vocab().find("a"), 3}));
  EXPECT_EQ(tok.encode("a", {.add_special = false}), (std::vector<TokenId>{tok.vocab().find("a")}));
}

TEST(BosEos, NoSpacePrefixIsAddedForByteLevelBpe) {
  // SentencePiece vocabularies prepend a space; byte-level BPE ones must not, even if the
  // file says tokenizer.ggml.add_space_prefix = true (llama.cpp ignores it in BPE encoding).
  test::TinyVocab tiny;
  auto w = tiny.writer();
  w.set_bool("tokenizer.ggml.add_space_prefix", true);
  const Tokenizer tok = test::tiny_tokenizer(w);
  EXPECT_EQ(tok.encode("hello", kNoBos), (std::vector<TokenId>{tok.vocab().find("hello")}));
  EXPECT_EQ(test::fixture_tokenizer("qwen2").encode("Hello", kNoBos), (std::vector<TokenId>{9707}));
}

}  // namespace
}  // namespace moe::tokenizer
