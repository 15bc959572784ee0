#pragma once
// Shared helpers for the tokenizer tests: llama.cpp's vocab fixtures (unpacked by the build
// into MOE_TEST_DATA_DIR/vocab) and a tiny hand-made vocabulary written with gguf::Writer.
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/file.h"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/tokenizer.h"

namespace moe::tokenizer::test {

inline std::string vocab_path(const std::string& name) {
  return std::string(MOE_TEST_DATA_DIR) + "/vocab/ggml-vocab-" + name + ".gguf";
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Loading a 150k-token vocabulary takes a moment; each is loaded once per test binary.
inline const Tokenizer& fixture_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto& slot = loaded[name];
  if (!slot) {
    gguf::Reader reader(vocab_path(name));
    slot = std::make_unique<Tokenizer>(Tokenizer::from_gguf(reader.metadata()));
  }
  return *slot;
}

struct TokenizerCase {
  std::string text;
  std::vector<TokenId> ids;
};

// llama.cpp's test-tokenizer-0 format: the .inp file is the cases joined by
// "\n__ggml_vocab_test__\n" (one also follows the last case, and splitting stops at the end
// of the file, so it adds no empty case); the .out file has one line of ids per case.
inline std::vector<TokenizerCase> read_cases(const std::string& name) {
  const std::string inp = read_file(vocab_path(name) + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(inp.substr(pos));
      break;
    }
    texts.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::istringstream out(read_file(vocab_path(name) + ".out"));
  std::vector<TokenizerCase> cases;
  std::string line;
  for (size_t i = 0; std::getline(out, line); ++i) {
    if (i >= texts.size()) throw std::runtime_error(name + ": more output lines than inputs");
    TokenizerCase c{texts[i], {}};
    std::istringstream ids(line);
    for (TokenId id; ids >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  if (cases.size() != texts.size()) throw std::runtime_error(name + ": fewer output lines than inputs");
  return cases;
}

// A small byte-level vocabulary: the 256 byte tokens (ids 0..255, in byte order), then the
// merged tokens of `merges` (in order), then `specials` as (text, type). Everything a test
// wants to break can be overwritten on the returned writer before building.
struct TinyVocab {
  std::vector<std::pair<std::string, std::string>> merges = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}};
  std::vector<std::pair<std::string, TokenType>> specials = {{"<|end|>", TokenType::Control},
                                                             {"<|end|>x", TokenType::Control},
                                                             {"<think>", TokenType::UserDefined}};
  std::string pre = "qwen2";

  gguf::Writer writer() const {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(byte_to_utf8(uint8_t(b)));
    std::vector<std::string> merge_lines;
    for (const auto& [l, r] : merges) {
      tokens.push_back(l + r);
      merge_lines.push_back(l + " " + r);
    }
    std::vector<int32_t> types(tokens.size(), int32_t(TokenType::Normal));
    for (const auto& [text, type] : specials) {
      tokens.push_back(text);
      types.push_back(int32_t(type));
    }
    gguf::Writer w;
    w.set_string("general.architecture", "qwen2");
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", pre);
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    w.set_array_i32("tokenizer.ggml.token_type", types);
    w.set_array_string("tokenizer.ggml.merges", merge_lines);
    w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(tokens.size() - specials.size()));
    w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(tokens.size() - specials.size()));
    return w;
  }
};

// Parses a writer's image in memory; the bytes are kept alive alongside the File.
struct InMemoryGguf {
  explicit InMemoryGguf(const gguf::Writer& w) : bytes(w.to_bytes()), file(bytes, "tiny.gguf") {}
  const gguf::Metadata& metadata() const { return file.metadata(); }
  std::vector<std::byte> bytes;
  gguf::File file;
};

inline Tokenizer tiny_tokenizer(const gguf::Writer& w) {
  InMemoryGguf g(w);
  return Tokenizer::from_gguf(g.metadata());
}

}  // namespace moe::tokenizer::test
