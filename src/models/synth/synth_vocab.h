#pragma once
// Vocabularies for synthetic models: a built-in byte-level BPE vocabulary (gpt2 model, qwen2
// pre-tokenizer, ChatML specials), or every tokenizer.* key copied from another GGUF file.
#include <cstdint>
#include <string>
#include <vector>

namespace moe::gguf {
class Writer;
}

namespace moe::synth {

struct SynthVocab {
  std::vector<std::string> tokens;  // byte-encoded (GPT-2 alphabet) texts, by id
  std::vector<int32_t> types;       // tokenizer.ggml.token_type values
  std::vector<std::string> merges;  // "left right", rank order
  uint32_t bos = 0, eos = 0, pad = 0;
};

// Tokens of the built-in small vocabulary: 256 byte tokens, merges learnt from a short English
// text, then <|endoftext|> <|im_start|> <|im_end|> as CONTROL tokens.
inline constexpr uint32_t kSmallVocabSize = 512;

// A vocabulary of exactly n_vocab tokens. kSmallVocabSize gives the small one; Qwen's size
// (>= 151669) gives Qwen's layout: BPE tokens below 151643 (the small vocabulary's merges,
// padded with generated merges), Qwen's 26 added tokens at 151643..151668 and "[PAD<id>]"
// UNUSED tokens after them, so BOS/EOS/PAD have Qwen's ids. Other sizes: BPE tokens, then the
// three ChatML specials last.
SynthVocab build_vocab(uint32_t n_vocab);

// Writes the tokenizer.* keys of `vocab` (gpt2 / qwen2 / ChatML template, no BOS added).
void write_vocab(gguf::Writer& writer, const SynthVocab& vocab);

// Copies every tokenizer.* key of the GGUF file at `path` after checking that our tokenizer
// loads it; returns its number of tokens. Throws moe::Error naming the file.
uint32_t copy_vocab(gguf::Writer& writer, const std::string& path);

}  // namespace moe::synth
