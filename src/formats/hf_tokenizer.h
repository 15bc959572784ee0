#pragma once
// A Hugging Face byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json, and the
// sampling defaults of generation_config.json) turned into llama.cpp's "gpt2" GGUF vocabulary,
// following convert_hf_to_gguf.py (TextModel.get_vocab_base, gguf-py SpecialVocab):
//   * tokens by id up to config.vocab_size; ids nobody defines become "[PAD<id>]" (UNUSED);
//   * added tokens that are special, or look like <|...|>, are CONTROL, other added tokens are
//     USER_DEFINED, the rest NORMAL;
//   * merges as "left right" strings (pair-form merges get spaces inside a part mapped to U+0120,
//     as gguf-py does, so the string stays splittable);
//   * bos/eos/pad ids from tokenizer_config.json's token names, falling back to
//     generation_config.json and then config.json ids;
//   * tokenizer.ggml.pre is "qwen2": only Qwen3-family checkpoints are converted.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/hf_config.h"
#include "gguf/writer.h"

namespace moe::formats {

// llama.cpp's token types.
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct HfVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;
  std::optional<uint32_t> bos_id, eos_id, pad_id, unk_id;
  bool add_bos_token = false;
  std::optional<std::string> chat_template;
};

struct SamplingDefaults {
  std::optional<int32_t> top_k;
  std::optional<float> top_p, temperature;
};

// Reads DIR/tokenizer.json, DIR/tokenizer_config.json (optional), DIR/chat_template.jinja
// (optional; transformers 5 saves the template there) and DIR/generation_config.json (optional).
HfVocab load_hf_vocab(const std::string& dir, const HfModelConfig& config);
SamplingDefaults load_sampling_defaults(const std::string& dir);

void write_vocab(const HfVocab& vocab, gguf::Writer& writer);
// general.sampling.top_k (i32), general.sampling.top_p (f32), general.sampling.temp (f32).
void write_sampling_defaults(const SamplingDefaults& sampling, gguf::Writer& writer);

// True for added tokens llama.cpp treats as CONTROL even when HF does not mark them special.
bool looks_special(std::string_view token);

}  // namespace moe::formats
