// Bad or unsupported tokenizer metadata gives one clear moe::Error naming what is wrong.
#include <gtest/gtest.h>

#include <gmock/gmock.h>

#include "core/error.h"
#include "tokenizer_test_util.h"

namespace moe::tokenizer {
namespace {

// The message of the moe::Error that building a tokenizer from `w` throws ("" if none).
std::string load_error(const gguf::Writer& w) {
  try {
    test::tiny_tokenizer(w);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

using ::testing::HasSubstr;

TEST(VocabErrors, TheTinyVocabularyItselfLoads) {
  EXPECT_EQ(load_error(test::TinyVocab{}.writer()), "");
}

TEST(VocabErrors, UnknownModelNamesTheValueAndTheSupportedOne) {
  auto w = test::TinyVocab{}.writer();
  w.set_string("tokenizer.ggml.model", "llama");
  const std::string e = load_error(w);
  EXPECT_THAT(e, HasSubstr("tokenizer.ggml.model = 'llama'"));
  EXPECT_THAT(e, HasSubstr("gpt2"));
  EXPECT_THAT(e, HasSubstr("tiny.gguf"));
}

TEST(VocabErrors, UnknownPreTokenizerListsTheSupportedOnes) {
  test::TinyVocab tiny;
  tiny.pre = "deepseek-coder";
  const std::string e = load_error(tiny.writer());
  EXPECT_THAT(e, HasSubstr("tokenizer.ggml.pre = 'deepseek-coder'"));
  for (const char* name : {"qwen2", "qwen35", "llama-bpe", "gpt-2"}) EXPECT_THAT(e, HasSubstr(name));
}

TEST(VocabErrors, MissingKeysAreNamed) {
  for (const char* key : {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                          "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}) {
    auto w = test::TinyVocab{}.writer();
    w.remove(key);
    EXPECT_THAT(load_error(w), HasSubstr(key)) << key;
  }
}

TEST(VocabErrors, TokenTypeCountMustMatchTokens) {
  auto w = test::TinyVocab{}.writer();
  const std::vector<int32_t> types(10, 1);
  w.set_array_i32("tokenizer.ggml.token_type", types);
  const std::string e = load_error(w);
  EXPECT_THAT(e, HasSubstr("tokenizer.ggml.token_type has 10 entries"));
}

TEST(VocabErrors, InvalidTokenTypeIsNamedWithItsIndex) {
  test::TinyVocab tiny;
  tiny.specials = {{"<x>", TokenType(9)}};
  EXPECT_THAT(load_error(tiny.writer()), HasSubstr("token_type[260] = 9"));
}

TEST(VocabErrors, MergeOfAnUnknownTokenNamesItsIndex) {
  test::TinyVocab tiny;
  auto w = tiny.writer();
  const std::vector<std::string> merges = {"h e", "l l", "he zz"};
  w.set_array_string("tokenizer.ggml.merges", merges);
  const std::string e = load_error(w);
  EXPECT_THAT(e, HasSubstr("tokenizer.ggml.merges[2] = 'he zz'"));
  EXPECT_THAT(e, HasSubstr("'zz' is not a token"));
}

TEST(VocabErrors, MergeWithoutSeparatorNamesItsIndex) {
  auto w = test::TinyVocab{}.writer();
  const std::vector<std::string> merges = {"h e", "ll"};
  w.set_array_string("tokenizer.ggml.merges", merges);
  EXPECT_THAT(load_error(w), HasSubstr("tokenizer.ggml.merges[1] = 'll'"));
}

TEST(VocabErrors, SpecialIdsMustBeInRange) {
  auto w = test::TinyVocab{}.writer();
  w.set_u32("tokenizer.ggml.bos_token_id", 100000);
  EXPECT_THAT(load_error(w), HasSubstr("tokenizer.ggml.bos_token_id = 100000 is out of range"));
  w = test::TinyVocab{}.writer();
  w.set_u32("tokenizer.ggml.eos_token_id", 263);
  EXPECT_THAT(load_error(w), HasSubstr("tokenizer.ggml.eos_token_id = 263 is out of range"));
}

TEST(VocabErrors, AddingBosNeedsABosId) {
  auto w = test::TinyVocab{}.writer();
  w.remove("tokenizer.ggml.bos_token_id");
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  EXPECT_THAT(load_error(w), HasSubstr("tokenizer.ggml.bos_token_id is missing"));
}

TEST(VocabErrors, DuplicateTokenTextIsRejected) {
  test::TinyVocab tiny;
  tiny.specials = {{"a", TokenType::UserDefined}};
  EXPECT_THAT(load_error(tiny.writer()), HasSubstr("repeats token 97"));
}

TEST(VocabErrors, WrongValueTypeNamesTheKey) {
  auto w = test::TinyVocab{}.writer();
  w.set_u32("tokenizer.ggml.tokens", 5);
  EXPECT_THAT(load_error(w), HasSubstr("tokenizer.ggml.tokens"));
}

}  // namespace
}  // namespace moe::tokenizer
