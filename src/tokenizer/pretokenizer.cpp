#include "tokenizer/pretokenizer.h"

#include <array>

#include "core/error.h"

namespace moe::tokenizer {
namespace {

// The regexes of llama.cpp's src/llama-vocab.cpp (HF's "(?i:'s|...)" spelt out case by case).
// GPT-2's gains the final "|\s+" of the original tokenizer.json regex: llama.cpp's string omits
// it, but its hand-written splitter, which is what actually runs, implements it.
constexpr std::string_view kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen35Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The regexes must see the same character classes as llama.cpp, whose tables are its own.
// llama.cpp's `\s` is Unicode's White_Space property. PCRE2's UCP `\s` is \p{Z}, \h and \v,
// which adds U+180E (MONGOLIAN VOWEL SEPARATOR, no longer a space since Unicode 6.3).
constexpr std::string_view kWhiteSpace = R"(\t\n\x0B\f\r\x20\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
// llama.cpp's tables follow Unicode 15.1; PCRE2 10.42 (Debian 12) has Unicode 14. These are
// the code points assigned since (Kawi, Nag Mundari, CJK Extensions H and I, ...) that
// llama.cpp counts as letters, numbers and marks; on a newer PCRE2 they are simply redundant.
constexpr std::string_view kLettersSince14 =
    R"(\x{1123F}-\x{11240}\x{11F02}\x{11F04}-\x{11F10}\x{11F12}-\x{11F33}\x{1342F}\x{13441}-\x{13446}\x{1B132})"
    R"(\x{1B155}\x{1DF25}-\x{1DF2A}\x{1E030}-\x{1E06D}\x{1E4D0}-\x{1E4EB}\x{2B739}\x{2EBF0}-\x{2EE5D}\x{31350}-\x{323AF})";
constexpr std::string_view kNumbersSince14 = R"(\x{11F50}-\x{11F59}\x{1D2C0}-\x{1D2D3}\x{1E4F0}-\x{1E4F9})";
constexpr std::string_view kMarksSince14 =
    R"(\x{CF3}\x{ECE}\x{10EFD}-\x{10EFF}\x{11241}\x{11F00}-\x{11F01}\x{11F03}\x{11F34}-\x{11F3A}\x{11F3E}-\x{11F42})"
    R"(\x{13440}\x{13447}-\x{13455}\x{1E08F}\x{1E4EC}-\x{1E4EF})";

// Same names as llama.cpp; each alias carries the defaults llama.cpp gives it. Only names
// whose behaviour differs from these entries in nothing but the regex are listed.
constexpr std::array kSpecs = {
    PreTokenizerSpec{"gpt-2", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"phi-2", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"jina-es", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"jina-de", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"gigachat", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"a.x-4.0", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"mellum", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"exaone4", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"mpt", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"olmo", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"jais", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"trillion", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"granite-docling", PreTokenizerType::Gpt2, false, false},
    PreTokenizerSpec{"llama-bpe", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"llama3", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"llama-v3", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"falcon3", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"falcon-h1", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"pixtral", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"midm-2.0", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"lfm2", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"jina-v5-nano", PreTokenizerType::Llama3, true, true},
    PreTokenizerSpec{"dbrx", PreTokenizerType::Llama3, false, false},
    PreTokenizerSpec{"smaug-bpe", PreTokenizerType::Llama3, false, false},
    PreTokenizerSpec{"qwen2", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"deepseek-r1-qwen", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"kormo", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"f2llmv2", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"megrez", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"stablelm2", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"hunyuan", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"solar-open", PreTokenizerType::Qwen2, false, false},
    PreTokenizerSpec{"qwen35", PreTokenizerType::Qwen35, false, false},
};

// The body of the class that replaces `escape` ("s", "p{L}", ...), or "" to keep it as it is.
std::string class_body(std::string_view escape) {
  if (escape == "s") return std::string(kWhiteSpace);
  if (escape == "p{L}") return "\\p{L}" + std::string(kLettersSince14);
  if (escape == "p{N}") return "\\p{N}" + std::string(kNumbersSince14);
  if (escape == "p{M}") return "\\p{M}" + std::string(kMarksSince14);
  return {};
}

// Rewrites `\s`, `\S`, `\p{L}`, `\p{N}` and `\p{M}`, inside or outside character classes, into
// explicit classes with llama.cpp's membership.
std::string with_llama_cpp_classes(std::string_view regex) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < regex.size(); ++i) {
    const char c = regex[i];
    if (c == '\\' && i + 1 < regex.size()) {
      size_t length = 1;  // "s" in `\s`; "p{L}" in `\p{L}`
      if (regex.substr(i + 1, 2) == "p{" && regex.find('}', i + 2) != std::string_view::npos) {
        length = regex.find('}', i + 2) - i;
      }
      const std::string_view escape = regex.substr(i + 1, length);
      i += length;
      if (escape == "S") {
        MOE_ASSERT(!in_class);  // a negated set inside a class has no plain spelling; none of ours needs it
        out += "[^" + std::string(kWhiteSpace) + "]";
      } else if (const std::string body = class_body(escape); !body.empty()) {
        out += in_class ? body : "[" + body + "]";
      } else {
        out += '\\';
        out += escape;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' or '^]' right after '[' is a literal, not the end of the class.
      if (i + 1 < regex.size() && regex[i + 1] == '^') out += regex[++i];
      if (i + 1 < regex.size() && regex[i + 1] == ']') out += regex[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

const PreTokenizerSpec& find_pre_tokenizer(std::string_view name) {
  for (const auto& spec : kSpecs) {
    if (spec.name == name) return spec;
  }
  fail("unsupported pre-tokenizer tokenizer.ggml.pre = '{}' (supported: {})", name, supported_pre_tokenizer_names());
}

std::string supported_pre_tokenizer_names() {
  std::string names;
  for (const auto& spec : kSpecs) {
    if (!names.empty()) names += ", ";
    names += spec.name;
  }
  return names;
}

std::string_view pre_tokenizer_regex(PreTokenizerType type) {
  switch (type) {
    case PreTokenizerType::Gpt2: return kGpt2Regex;
    case PreTokenizerType::Llama3: return kLlama3Regex;
    case PreTokenizerType::Qwen2: return kQwen2Regex;
    case PreTokenizerType::Qwen35: return kQwen35Regex;
  }
  MOE_ASSERT(false);
  return {};
}

PreTokenizer::PreTokenizer(PreTokenizerType type)
    : type_(type), regex_(with_llama_cpp_classes(pre_tokenizer_regex(type))) {}

}  // namespace moe::tokenizer
