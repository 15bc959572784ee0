#include "tokenizer/vocab.h"

#include <algorithm>
#include <bit>

#include "core/error.h"
#include "core/log.h"
#include "gguf/file.h"
#include "tokenizer/byte_unicode.h"

namespace moe::tokenizer {
namespace {

constexpr std::string_view kModelKey = "tokenizer.ggml.model";
constexpr std::string_view kPreKey = "tokenizer.ggml.pre";
constexpr std::string_view kTokensKey = "tokenizer.ggml.tokens";
constexpr std::string_view kTypesKey = "tokenizer.ggml.token_type";
constexpr std::string_view kMergesKey = "tokenizer.ggml.merges";
constexpr std::string_view kBosKey = "tokenizer.ggml.bos_token_id";
constexpr std::string_view kEosKey = "tokenizer.ggml.eos_token_id";
constexpr std::string_view kAddBosKey = "tokenizer.ggml.add_bos_token";
constexpr std::string_view kAddEosKey = "tokenizer.ggml.add_eos_token";

// Array getters that put the file and key in front of the reader's message.
std::vector<std::string_view> get_strings(const gguf::Metadata& md, std::string_view key) {
  const gguf::Value& value = md.require(key);
  try {
    return value.to_strings();
  } catch (const Error& e) {
    fail("{}: {}: {}", md.source, key, e.what());
  }
}

std::vector<int64_t> get_ints(const gguf::Metadata& md, std::string_view key) {
  const gguf::Value& value = md.require(key);
  try {
    return value.to_ints();
  } catch (const Error& e) {
    fail("{}: {}: {}", md.source, key, e.what());
  }
}

}  // namespace

std::string_view token_type_name(TokenType type) {
  switch (type) {
    case TokenType::Undefined: return "undefined";
    case TokenType::Normal: return "normal";
    case TokenType::Unknown: return "unknown";
    case TokenType::Control: return "control";
    case TokenType::UserDefined: return "user-defined";
    case TokenType::Unused: return "unused";
    case TokenType::Byte: return "byte";
  }
  return "invalid";
}

Vocab Vocab::from_gguf(const gguf::Metadata& md) {
  const std::string_view model = md.get_string(kModelKey);
  if (model != "gpt2") {
    fail("{}: unsupported tokenizer {} = '{}' (supported: gpt2, i.e. byte-level BPE; SentencePiece and others are "
         "not implemented)",
         md.source, kModelKey, model);
  }
  Vocab vocab;
  const std::string_view pre = md.get_string(kPreKey);
  try {
    vocab.pre_ = &find_pre_tokenizer(pre);
  } catch (const Error& e) {
    fail("{}: {}", md.source, e.what());
  }
  vocab.load_tokens(md);
  vocab.load_merges(md);
  vocab.load_special_ids(md);
  return vocab;
}

const Merge* Vocab::find_merge(TokenId left, TokenId right) const {
  const uint64_t key = pair_key(left, right);
  const size_t mask = merge_slots_.size() - 1;
  for (size_t i = merge_slot(key);; i = (i + 1) & mask) {
    const MergeSlot& slot = merge_slots_[i];
    if (slot.key == key) return &slot.merge;
    if (slot.key == kEmptyKey) return nullptr;
  }
}

void Vocab::load_tokens(const gguf::Metadata& md) {
  const std::vector<std::string_view> texts = get_strings(md, kTokensKey);
  const std::vector<int64_t> types = get_ints(md, kTypesKey);
  if (texts.empty()) fail("{}: {} is empty", md.source, kTokensKey);
  if (types.size() != texts.size()) {
    fail("{}: {} has {} entries but {} has {}", md.source, kTypesKey, types.size(), kTokensKey, texts.size());
  }
  if (texts.size() > size_t(INT32_MAX)) fail("{}: {} has {} entries, too many", md.source, kTokensKey, texts.size());

  texts_.reserve(texts.size());
  types_.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    // llama.cpp renames empty tokens so that no text maps to them; do the same.
    texts_.emplace_back(texts[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : std::string(texts[i]));
    if (types[i] < int64_t(TokenType::Undefined) || types[i] > int64_t(TokenType::Byte)) {
      fail("{}: {}[{}] = {} is not a token type (0..6)", md.source, kTypesKey, i, types[i]);
    }
    types_.push_back(TokenType(types[i]));
  }
  if (const int64_t repeat = token_ids_.build(texts_); repeat >= 0) {
    const std::string_view text = texts_[size_t(repeat)];
    size_t first = 0;
    while (texts_[first] != text) ++first;
    fail("{}: {}[{}] = '{}' repeats token {}", md.source, kTokensKey, repeat, text, first);
  }

  std::string missing_bytes;
  for (int b = 0; b < 256; ++b) {
    byte_tokens_[size_t(b)] = find(byte_to_utf8(uint8_t(b)));
    if (byte_tokens_[size_t(b)] == kNoToken) missing_bytes += fmt::format(" 0x{:02X}", b);
  }
  if (!missing_bytes.empty()) {
    spdlog::warn("{}: no token for byte(s){}; text containing them loses them when encoded", md.source, missing_bytes);
  }
}

void Vocab::load_merges(const gguf::Metadata& md) {
  const std::vector<std::string_view> merges = get_strings(md, kMergesKey);
  if (merges.size() > size_t(INT32_MAX)) fail("{}: {} has {} entries, too many", md.source, kMergesKey, merges.size());
  size_t capacity = 16;
  while (capacity * 3 < merges.size() * 4 + 4) capacity *= 2;
  merge_slots_.assign(capacity, MergeSlot{});
  merge_shift_ = 64 - std::countr_zero(capacity);
  std::string joined;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string_view line = merges[i];
    // Search from 1 as llama.cpp does: the parts are never empty, so a leading space (if a
    // vocabulary had raw spaces) belongs to the left part.
    const size_t space = line.size() > 1 ? line.find(' ', 1) : std::string_view::npos;
    if (space == std::string_view::npos || space + 1 == line.size()) {
      fail("{}: {}[{}] = '{}' is not two tokens separated by a space", md.source, kMergesKey, i, line);
    }
    const std::string_view left_text = line.substr(0, space), right_text = line.substr(space + 1);
    const TokenId left = find(left_text), right = find(right_text);
    if (left == kNoToken || right == kNoToken) {
      fail("{}: {}[{}] = '{}': '{}' is not a token", md.source, kMergesKey, i, line,
           left == kNoToken ? left_text : right_text);
    }
    joined.assign(left_text).append(right_text);
    // Like llama.cpp, the first occurrence of a pair sets its rank.
    const uint64_t key = pair_key(left, right);
    size_t slot = merge_slot(key);
    while (merge_slots_[slot].key != kEmptyKey && merge_slots_[slot].key != key) slot = (slot + 1) & (capacity - 1);
    if (merge_slots_[slot].key == kEmptyKey) {
      merge_slots_[slot] = {key, Merge{int32_t(i), find(joined)}};
      ++n_merges_;
    }
  }
}

void Vocab::load_special_ids(const gguf::Metadata& md) {
  auto load_id = [&](std::string_view key) -> TokenId {
    if (!md.find(key)) return kNoToken;
    const uint64_t id = md.get_uint(key);
    if (id >= texts_.size()) fail("{}: {} = {} is out of range (vocabulary has {} tokens)", md.source, key, id, size());
    return TokenId(id);
  };
  bos_ = load_id(kBosKey);
  eos_ = load_id(kEosKey);
  add_bos_ = md.get_bool(kAddBosKey, pre_->add_bos);
  add_eos_ = md.get_bool(kAddEosKey, false);
  if (add_bos_ && bos_ == kNoToken) fail("{}: BOS is to be added but {} is missing", md.source, kBosKey);
  if (add_eos_ && eos_ == kNoToken) fail("{}: EOS is to be added but {} is missing", md.source, kEosKey);

  for (size_t i = 0; i < types_.size(); ++i) {
    const TokenType t = types_[i];
    if (t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) {
      special_tokens_.push_back(TokenId(i));
    }
  }
  // llama.cpp sorts by length only (std::sort, unstable); ties by id keep ours deterministic.
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(),
                   [&](TokenId a, TokenId b) { return text(a).size() > text(b).size(); });
}

}  // namespace moe::tokenizer
