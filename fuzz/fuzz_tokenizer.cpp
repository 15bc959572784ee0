// Feeds arbitrary bytes to the tokenizer of a real vocabulary (MOE_FUZZ_VOCAB, a GGUF file).
// Encoding must never crash; valid UTF-8 without special tokens must decode back to itself;
// the streaming detokenizer must agree with the one-shot decoder on valid text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "gguf/reader.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {
std::unique_ptr<moe::tokenizer::Tokenizer> g_tokenizer;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("MOE_FUZZ_VOCAB");
  if (!path) {
    std::fprintf(stderr, "fuzz_tokenizer: set MOE_FUZZ_VOCAB to a GGUF vocabulary\n");
    std::abort();
  }
  moe::gguf::Reader reader(path);
  g_tokenizer = std::make_unique<moe::tokenizer::Tokenizer>(moe::tokenizer::Tokenizer::from_gguf(reader.metadata()));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto& tok = *g_tokenizer;
  // With specials parsed: any input, no crash, every id valid.
  const auto with_special = tok.encode(text);
  (void)tok.decode(with_special);
  // As plain text: valid UTF-8 must come back byte for byte, in one piece and streamed.
  const auto ids = tok.encode(text, {.add_special = false, .parse_special = false});
  if (moe::tokenizer::is_valid_utf8(text)) {
    if (tok.decode(ids) != text) std::abort();
    moe::tokenizer::StreamDecoder stream(tok);
    std::string streamed;
    for (auto id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    if (streamed != text) std::abort();
  }
  return 0;
}
