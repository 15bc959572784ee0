#include "models/synth/synth_vocab.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <unordered_set>

#include "core/error.h"
#include "gguf/reader.h"
#include "gguf/writer.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace moe::synth {
namespace {

constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;
constexpr uint32_t kQwenFirstAdded = 151643;

// The merges are learnt from this text, so the small vocabulary holds common English pieces
// ("Ġthe", "ing", "Ġand") and typical text tokenizes into multi-byte tokens.
constexpr std::string_view kTrainingText =
    "The quick brown fox jumps over the lazy dog. A language model reads text as a sequence of tokens and "
    "predicts the next one. In the beginning there was the word, and the word was split into pieces that "
    "the model could learn. Mixture of experts models route every token to a few of their many experts, "
    "which makes them large but fast. The router chooses the experts with the highest scores, and the "
    "outputs of the chosen experts are added together with their weights. Hello world! This is a test of "
    "the tokenizer: it should handle words, numbers like 42 and 2026, punctuation, and spaces. We are "
    "writing the weights of a model that is random, so its answers mean nothing, but its shapes and its "
    "numbers are those of a real model. Thinking, reading, writing and testing are things that engineers "
    "do every day; they also like to find the cause of a problem and fix it in the right place.";

// The chat template of Qwen's instruct models, reduced to plain ChatML.
constexpr std::string_view kChatTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Splits text roughly as the qwen2 pre-tokenizer does (a letter run with its leading space,
// single other characters) and spells each word in the byte alphabet, one symbol per code point.
std::vector<std::vector<std::string>> training_words() {
  auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  const std::string_view text = kTrainingText;
  std::vector<std::string_view> raw;
  for (size_t i = 0; i < text.size();) {
    size_t end = i + 1;
    const bool spaced_word = text[i] == ' ' && end < text.size() && is_letter(text[end]);
    if (spaced_word || is_letter(text[i])) {
      while (end < text.size() && is_letter(text[end])) ++end;
    }
    raw.push_back(text.substr(i, end - i));
    i = end;
  }
  std::vector<std::vector<std::string>> words;
  for (const auto& w : raw) {
    std::string encoded;
    tokenizer::append_byte_encoded(encoded, w);
    std::vector<std::string> symbols;
    for (size_t at = 0; at < encoded.size();) {
      const size_t len = tokenizer::decode_utf8(std::string_view(encoded).substr(at)).length;
      symbols.push_back(encoded.substr(at, len));
      at += len;
    }
    words.push_back(std::move(symbols));
  }
  return words;
}

class VocabBuilder {
 public:
  VocabBuilder() {
    // The 256 byte tokens in code point order, which is GPT-2's order for its first 256 ids.
    std::vector<std::pair<uint32_t, uint8_t>> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(tokenizer::byte_to_codepoint(uint8_t(b)), uint8_t(b));
    std::sort(bytes.begin(), bytes.end());
    for (const auto& [cp, b] : bytes) add(std::string(tokenizer::byte_to_utf8(b)), kNormal);
  }

  bool has(const std::string& text) const { return known_.count(text) > 0; }
  size_t size() const { return v.tokens.size(); }

  uint32_t add(std::string text, int32_t type) {
    MOE_ASSERT(!has(text));
    known_.insert(text);
    v.tokens.push_back(std::move(text));
    v.types.push_back(type);
    return uint32_t(v.tokens.size() - 1);
  }

  // A merge of two existing tokens into a new one.
  void merge(const std::string& left, const std::string& right) {
    MOE_ASSERT(has(left) && has(right));
    add(left + right, kNormal);
    v.merges.push_back(left + " " + right);
  }

  // Byte-pair training on kTrainingText until `target` tokens or no pair repeats.
  void learn_merges(size_t target) {
    auto words = training_words();
    while (size() < target) {
      std::map<std::pair<std::string, std::string>, int> counts;  // ordered: ties go to the smallest pair
      for (const auto& w : words) {
        for (size_t i = 0; i + 1 < w.size(); ++i) {
          if (!has(w[i] + w[i + 1])) ++counts[{w[i], w[i + 1]}];
        }
      }
      auto best = counts.end();
      for (auto it = counts.begin(); it != counts.end(); ++it) {
        if (it->second >= 2 && (best == counts.end() || it->second > best->second)) best = it;
      }
      if (best == counts.end()) return;
      const auto [left, right] = best->first;
      merge(left, right);
      for (auto& w : words) {
        for (size_t i = 0; i + 1 < w.size(); ++i) {
          if (w[i] == left && w[i + 1] == right) {
            w[i] += w[i + 1];
            w.erase(w.begin() + std::ptrdiff_t(i) + 1);
          }
        }
      }
    }
  }

  // Pads with "token + letter" merges, visiting tokens in id order (so the new tokens extend
  // learnt words first and later extend each other) until `target` tokens.
  void pad_with_generated_merges(size_t target) {
    static constexpr std::string_view kLetters = "etaoinsrhldcumfpgwybvkxjqz";
    for (size_t base = 256; size() < target; ++base) {
      MOE_ASSERT(base < size());
      const std::string left = v.tokens[base];
      for (char c : kLetters) {
        if (size() >= target) break;
        const std::string right(1, c);
        if (!has(left + right)) merge(left, right);
      }
    }
  }

  SynthVocab v;

 private:
  std::unordered_set<std::string> known_;
};

}  // namespace

SynthVocab build_vocab(uint32_t n_vocab) {
  static constexpr std::string_view kChatMl[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  static constexpr std::string_view kQwenAdded[] = {
      "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
      "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
      "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
      "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
      "</tool_response>", "<think>", "</think>"};
  constexpr uint32_t kQwenAddedEnd = kQwenFirstAdded + std::size(kQwenAdded);
  if (n_vocab < 256 + std::size(kChatMl)) fail("synth: a vocabulary of {} tokens is too small", n_vocab);

  const bool qwen_layout = n_vocab >= kQwenAddedEnd;
  const uint32_t n_bpe = qwen_layout ? kQwenFirstAdded : n_vocab - uint32_t(std::size(kChatMl));
  VocabBuilder b;
  b.learn_merges(std::min<size_t>(n_bpe, kSmallVocabSize - std::size(kChatMl)));
  b.pad_with_generated_merges(n_bpe);
  if (qwen_layout) {
    for (auto text : kQwenAdded) {
      const bool control = text.starts_with("<|") && text.ends_with("|>");
      b.add(std::string(text), control ? kControl : kUserDefined);
    }
    while (b.size() < n_vocab) b.add("[PAD" + std::to_string(b.size()) + "]", kUnused);
  } else {
    for (auto text : kChatMl) b.add(std::string(text), kControl);
  }
  const uint32_t first_special = qwen_layout ? kQwenFirstAdded : n_bpe;
  b.v.bos = first_special;     // <|endoftext|>
  b.v.eos = first_special + 2;  // <|im_end|>
  b.v.pad = first_special;
  return std::move(b.v);
}

void write_vocab(gguf::Writer& w, const SynthVocab& v) {
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "qwen2");
  w.set_array_string("tokenizer.ggml.tokens", v.tokens);
  w.set_array_i32("tokenizer.ggml.token_type", v.types);
  w.set_array_string("tokenizer.ggml.merges", v.merges);
  w.set_u32("tokenizer.ggml.eos_token_id", v.eos);
  w.set_u32("tokenizer.ggml.padding_token_id", v.pad);
  w.set_u32("tokenizer.ggml.bos_token_id", v.bos);
  w.set_bool("tokenizer.ggml.add_bos_token", false);
  w.set_string("tokenizer.chat_template", kChatTemplate);
}

uint32_t copy_vocab(gguf::Writer& w, const std::string& path) {
  const gguf::Reader reader(path);
  const gguf::Metadata& md = reader.metadata();
  const auto tok = tokenizer::Tokenizer::from_gguf(md);  // rejects vocabularies we cannot use
  using gguf::ValueType;
  for (const auto& [key, value] : md.entries()) {
    if (!key.starts_with("tokenizer.")) continue;
    if (value.is_array()) {
      switch (value.element_type()) {
        case ValueType::String: {
          const auto views = value.to_strings();
          w.set_array_string(key, std::vector<std::string>(views.begin(), views.end()));
          break;
        }
        case ValueType::I32: {
          const auto ints = value.to_ints();
          w.set_array_i32(key, std::vector<int32_t>(ints.begin(), ints.end()));
          break;
        }
        case ValueType::U32: {
          const auto ints = value.to_ints();
          w.set_array_u32(key, std::vector<uint32_t>(ints.begin(), ints.end()));
          break;
        }
        case ValueType::F32: {
          const auto reals = value.to_doubles();
          w.set_array_f32(key, std::vector<float>(reals.begin(), reals.end()));
          break;
        }
        default:
          fail("{}: {}: arrays of {} cannot be copied", path, key, gguf::value_type_name(value.element_type()));
      }
      continue;
    }
    switch (value.type()) {
      case ValueType::U8: w.set_u8(key, uint8_t(value.to_uint())); break;
      case ValueType::I8: w.set_i8(key, int8_t(value.to_int())); break;
      case ValueType::U16: w.set_u16(key, uint16_t(value.to_uint())); break;
      case ValueType::I16: w.set_i16(key, int16_t(value.to_int())); break;
      case ValueType::U32: w.set_u32(key, uint32_t(value.to_uint())); break;
      case ValueType::I32: w.set_i32(key, int32_t(value.to_int())); break;
      case ValueType::U64: w.set_u64(key, value.to_uint()); break;
      case ValueType::I64: w.set_i64(key, value.to_int()); break;
      case ValueType::F32: w.set_f32(key, float(value.to_double())); break;
      case ValueType::F64: w.set_f64(key, value.to_double()); break;
      case ValueType::Bool: w.set_bool(key, value.to_bool()); break;
      case ValueType::String: w.set_string(key, value.to_string()); break;
      case ValueType::Array: break;  // handled above
    }
  }
  return uint32_t(tok.vocab().size());
}

}  // namespace moe::synth
