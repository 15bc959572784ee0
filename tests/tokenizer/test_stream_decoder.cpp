// Streaming detokenization: only whole UTF-8 characters come out, however tokens split them.
#include <gtest/gtest.h>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace moe::tokenizer {
namespace {

const std::string kFffd(kReplacementCharacter);

// Feeds `bytes` one at a time and returns what came out after each byte.
std::vector<std::string> feed_bytewise(Utf8StreamAssembler& a, std::string_view bytes) {
  std::vector<std::string> outs;
  for (const char c : bytes) outs.push_back(a.push(std::string_view(&c, 1)));
  return outs;
}

TEST(StreamDecoder, EmojiSplitIntoByteTokensComesOutWhole) {
  const Tokenizer& tok = test::fixture_tokenizer("qwen2");
  const std::string llama = "\xF0\x9F\xA6\x99";  // U+1F999 LLAMA
  std::vector<TokenId> byte_tokens;
  for (const char c : llama) byte_tokens.push_back(tok.vocab().find(byte_to_utf8(uint8_t(c))));
  StreamDecoder stream(tok);
  EXPECT_EQ(stream.push(tok.vocab().find("a")), "a");
  EXPECT_EQ(stream.push(byte_tokens[0]), "");
  EXPECT_EQ(stream.push(byte_tokens[1]), "");
  EXPECT_EQ(stream.push(byte_tokens[2]), "");
  EXPECT_EQ(stream.push(byte_tokens[3]), llama);
  EXPECT_EQ(stream.finish(), "");
}

TEST(StreamDecoder, ZwjSequenceStreamsToTheSameTextAsDecode) {
  const Tokenizer& tok = test::fixture_tokenizer("qwen2");
  // Woman technologist, medium skin tone (ZWJ sequence), then a flag and CJK text.
  const std::string text = "\xF0\x9F\x91\xA9\xF0\x9F\x8F\xBD\xE2\x80\x8D\xF0\x9F\x92\xBB \xF0\x9F\x87\xAF\xF0\x9F\x87\xB5 \xE4\xBD\xA0\xE5\xA5\xBD";
  const auto ids = tok.encode(text, {.add_special = false});
  StreamDecoder stream(tok);
  std::string streamed;
  for (const TokenId id : ids) {
    const std::string chunk = stream.push(id);
    EXPECT_TRUE(is_valid_utf8(chunk)) << "token " << id;
    streamed += chunk;
  }
  streamed += stream.finish();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(StreamDecoder, SkipsControlTokensWhenAsked) {
  const Tokenizer& tok = test::fixture_tokenizer("qwen2");
  StreamDecoder stream(tok, {.render_special = false});
  EXPECT_EQ(stream.push(151645), "");  // <|im_end|>
  StreamDecoder rendering(tok);
  EXPECT_EQ(rendering.push(151645), "<|im_end|>");
}

TEST(Utf8StreamAssembler, HoldsBackAPartialCharacterByteByByte) {
  Utf8StreamAssembler a;
  EXPECT_EQ(feed_bytewise(a, "\xE4\xBD\xA0"), (std::vector<std::string>{"", "", "\xE4\xBD\xA0"}));
  EXPECT_EQ(a.pending(), 0u);
  EXPECT_EQ(feed_bytewise(a, "\xF0\x9F\x98"), (std::vector<std::string>{"", "", ""}));
  EXPECT_EQ(a.pending(), 3u);
  EXPECT_EQ(a.push("\x80z"), "\xF0\x9F\x98\x80z");
}

TEST(Utf8StreamAssembler, InvalidBytesBecomeReplacementCharactersAsSoonAsTheyAreProven) {
  Utf8StreamAssembler a;
  EXPECT_EQ(a.push("\xFF"), kFffd);               // never valid anywhere
  EXPECT_EQ(a.push("\x80"), kFffd);               // a stray continuation byte
  EXPECT_EQ(a.push("\xE4\xBD"), "");              // could still complete...
  EXPECT_EQ(a.push("x"), kFffd + "x");            // ...but does not: one U+FFFD for the subpart
  EXPECT_EQ(a.push("\xC0\xAF"), kFffd + kFffd);   // overlong '/'
  EXPECT_EQ(a.push("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // a UTF-16 surrogate
  EXPECT_EQ(a.push("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  EXPECT_EQ(a.pending(), 0u);
}

TEST(Utf8StreamAssembler, FinishFlushesAnUnfinishedCharacter) {
  Utf8StreamAssembler a;
  EXPECT_EQ(a.push("ok\xF0\x9F"), "ok");
  EXPECT_EQ(a.finish(), kFffd);
  EXPECT_EQ(a.pending(), 0u);
  EXPECT_EQ(a.finish(), "");
  EXPECT_EQ(a.push("\xC3\xA9"), "\xC3\xA9");
}

}  // namespace
}  // namespace moe::tokenizer
