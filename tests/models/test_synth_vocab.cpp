// The built-in vocabularies load in our tokenizer and round-trip text; --vocab copies a real
// one; vocabulary sizes that do not fit the model are refused before anything is written.
#include <gtest/gtest.h>

#include "gguf/file.h"
#include "gguf/writer.h"
#include "models/synth/synth_vocab.h"
#include "synth_test_util.h"
#include "tokenizer/tokenizer.h"

namespace moe::test {
namespace {

using tokenizer::TokenType;

// A vocab-only GGUF image and the tokenizer loaded from it (the image must outlive the File).
struct LoadedVocab {
  std::vector<std::byte> bytes;
  std::unique_ptr<gguf::File> file;
  std::unique_ptr<tokenizer::Tokenizer> tok;
};

LoadedVocab load(const synth::SynthVocab& v) {
  LoadedVocab out;
  gguf::Writer w;
  synth::write_vocab(w, v);
  out.bytes = w.to_bytes();
  out.file = std::make_unique<gguf::File>(out.bytes, "synth-vocab");
  out.tok = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_gguf(out.file->metadata()));
  return out;
}

const std::string kTexts[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Grüße, 你好 🦙\n\n  tabs\tand   spaces ",
    "<|im_start|>user\nthinking about the tokenizer<|im_end|>\n<|im_start|>assistant\n",
    "numbers 1234567890 and symbols #$%^&*()",
};

void expect_round_trip(const tokenizer::Tokenizer& tok) {
  for (const auto& text : kTexts) {
    const auto ids = tok.encode(text);
    EXPECT_EQ(tok.decode(ids), text);
  }
}

TEST(SynthVocab, SmallVocabularyLoadsAndRoundTrips) {
  const auto v = synth::build_vocab(synth::kSmallVocabSize);
  ASSERT_EQ(v.tokens.size(), 512u);
  EXPECT_EQ(v.merges.size(), 512u - 256 - 3);
  const auto loaded = load(v);
  const auto& tok = *loaded.tok;
  EXPECT_EQ(tok.vocab().size(), 512u);
  EXPECT_EQ(tok.vocab().n_merges(), v.merges.size());
  expect_round_trip(tok);
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    const auto id = tok.vocab().find(special);
    ASSERT_NE(id, tokenizer::kNoToken) << special;
    EXPECT_EQ(tok.vocab().type(id), TokenType::Control);
    EXPECT_EQ(tok.encode(special), std::vector<tokenizer::TokenId>{id});
  }
  EXPECT_EQ(tok.vocab().eos(), tok.vocab().find("<|im_end|>"));
  EXPECT_FALSE(tok.vocab().add_bos());
  // The learnt merges compress English: fewer tokens than bytes.
  EXPECT_LT(tok.encode(kTexts[0]).size(), std::string(kTexts[0]).size() * 2 / 3);
  // Every merge joins two existing tokens into a token of its own.
  for (const auto& m : v.merges) {
    const size_t space = m.find(' ', 1);
    const std::string joined = m.substr(0, space) + m.substr(space + 1);
    EXPECT_NE(tok.vocab().find(joined), tokenizer::kNoToken) << m;
  }
}

TEST(SynthVocab, QwenSizedVocabularyHasQwenLayout) {
  const auto v = synth::build_vocab(151936);
  ASSERT_EQ(v.tokens.size(), 151936u);
  EXPECT_EQ(v.merges.size(), 151643u - 256);
  const auto loaded = load(v);
  const auto& vocab = loaded.tok->vocab();
  EXPECT_EQ(vocab.find("<|endoftext|>"), 151643);
  EXPECT_EQ(vocab.find("<|im_end|>"), 151645);
  EXPECT_EQ(vocab.find("<think>"), 151667);
  EXPECT_EQ(vocab.type(151667), TokenType::UserDefined);
  EXPECT_EQ(vocab.type(151644), TokenType::Control);
  EXPECT_EQ(vocab.text(151935), "[PAD151935]");
  EXPECT_EQ(vocab.type(151935), TokenType::Unused);
  EXPECT_EQ(vocab.bos(), 151643);
  EXPECT_EQ(vocab.eos(), 151645);
  expect_round_trip(*loaded.tok);
}

TEST(SynthVocab, ModelFileTokenizerLoads) {
  ScratchDir dir("vocab_model");
  write_model(dir.file("m.gguf"), "qwen3moe", "tiny");
  const gguf::Reader r(dir.file("m.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(r.metadata());
  EXPECT_EQ(size_t(r.tensor("token_embd.weight").ne[1]), tok.vocab().size());
  expect_round_trip(tok);
}

TEST(SynthVocab, CopiesTokenizerFromVocabFile) {
  const std::string qwen = std::string(MOE_TEST_DATA_DIR) + "/vocab/ggml-vocab-qwen2.gguf";
  ScratchDir dir("vocab_copy");
  auto o = options("qwen3", "tiny");
  o.vocab_path = qwen;
  o.output = dir.file("m.gguf");
  const auto report = synth::write_synth_model(o);
  EXPECT_EQ(report.n_vocab, 151936u);
  const gguf::Reader src(qwen), dst(dir.file("m.gguf"));
  size_t copied = 0;
  for (const auto& [key, value] : src.metadata().entries()) {
    if (!key.starts_with("tokenizer.")) continue;
    ++copied;
    const gguf::Value* got = dst.metadata().find(key);
    ASSERT_NE(got, nullptr) << key;
    EXPECT_EQ(got->to_display(1u << 20), value.to_display(1u << 20)) << key;
  }
  EXPECT_GE(copied, 5u);
  EXPECT_EQ(dst.tensor("token_embd.weight").ne[1], 151936);
  const auto a = tokenizer::Tokenizer::from_gguf(src.metadata()), b = tokenizer::Tokenizer::from_gguf(dst.metadata());
  for (const auto& text : kTexts) EXPECT_EQ(a.encode(text), b.encode(text));
}

TEST(SynthVocab, WrongVocabularySizeIsRefused) {
  const std::string gpt2 = std::string(MOE_TEST_DATA_DIR) + "/vocab/ggml-vocab-gpt-2.gguf";
  ScratchDir dir("vocab_size");
  auto o = options("qwen3", "0.6b");
  o.vocab_path = gpt2;
  o.output = dir.file("m.gguf");
  try {
    synth::write_synth_model(o);
    FAIL() << "a 50257-token vocabulary was accepted for a 151936-token model";
  } catch (const moe::Error& e) {
    EXPECT_NE(std::string(e.what()).find("151936"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace moe::test
