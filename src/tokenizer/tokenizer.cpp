#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_unicode.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/utf8.h"

namespace moe::tokenizer {
namespace {

// Words longer than this are not cached: they rarely repeat and would bloat the cache.
constexpr size_t kMaxCachedWordBytes = 64;

// "<0x0A>" -> 10, for BYTE tokens spelt that way; -1 otherwise.
int parse_hex_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (const char c : text.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

std::string decoded_piece(const Vocab& vocab, TokenId id) {
  const std::string_view text = vocab.text(id);
  std::string piece;
  switch (vocab.type(id)) {
    case TokenType::Normal:
      append_byte_decoded(piece, text);
      break;
    case TokenType::Byte:
      if (const int byte = parse_hex_byte_token(text); byte >= 0) {
        piece += char(byte);
      } else {
        append_byte_decoded(piece, text);
      }
      break;
    case TokenType::Control:
    case TokenType::UserDefined:
    case TokenType::Unknown:
      piece = text;  // special tokens are spelt in plain UTF-8, not in the byte alphabet
      break;
    case TokenType::Unused:
    case TokenType::Undefined:
      break;  // llama.cpp renders these as nothing
  }
  return piece;
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)), pre_tokenizer_(vocab_.pre_tokenizer().type) {
  pieces_.reserve(vocab_.size());
  for (size_t i = 0; i < vocab_.size(); ++i) pieces_.push_back(decoded_piece(vocab_, TokenId(i)));
}

Tokenizer Tokenizer::from_gguf(const gguf::Metadata& metadata) { return Tokenizer(Vocab::from_gguf(metadata)); }

std::vector<TokenId> Tokenizer::encode(std::string_view text, EncodeOptions options) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_special && vocab_.add_bos()) out.push_back(vocab_.bos());
  for (const Fragment& f : split_special_tokens(text, vocab_, options.parse_special)) {
    if (f.is_text()) {
      encode_text(text.substr(f.begin, f.end - f.begin), out);
    } else {
      out.push_back(f.token);
    }
  }
  if (options.add_special && vocab_.add_eos()) out.push_back(vocab_.eos());
  return out;
}

void Tokenizer::encode_text(std::string_view raw, std::vector<TokenId>& out) const {
  // PCRE2 needs valid UTF-8; only build a repaired copy when the text needs it.
  std::string repaired;
  std::string_view text = raw;
  if (!is_valid_utf8(raw)) {
    repaired = replace_invalid_utf8_bytewise(raw);
    text = repaired;
  }

  // Long prompts repeat words a lot. The cache is per call, which keeps encode() free of
  // shared state; it maps a word to its ids, stored back to back in one array.
  struct CachedIds {
    uint32_t begin;
    uint32_t count;
  };
  std::unordered_map<std::string_view, CachedIds> cache;
  cache.reserve(std::min<size_t>(text.size() / 16, 1 << 16));
  std::vector<TokenId> cached_ids;
  BpeWordEncoder bpe(vocab_);
  std::string encoded;
  const bool ignore_merges = vocab_.pre_tokenizer().ignore_merges;
  pre_tokenizer_.for_each_word(text, [&](std::string_view word) {
    const bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
      if (const auto it = cache.find(word); it != cache.end()) {
        const auto first = cached_ids.begin() + it->second.begin;
        out.insert(out.end(), first, first + it->second.count);
        return;
      }
    }
    const size_t start = out.size();
    TokenId whole = kNoToken;
    if (ignore_merges) {
      encoded.clear();
      append_byte_encoded(encoded, word);
      whole = vocab_.find(encoded);
    }
    if (whole != kNoToken) {
      out.push_back(whole);
    } else {
      bpe.encode(word, out);
    }
    if (cacheable) {
      cache.emplace(word, CachedIds{uint32_t(cached_ids.size()), uint32_t(out.size() - start)});
      cached_ids.insert(cached_ids.end(), out.begin() + std::ptrdiff_t(start), out.end());
    }
  });
}

std::string_view Tokenizer::piece(TokenId id, bool render_special) const {
  if (!vocab_.contains(id)) fail("token id {} is out of range (vocabulary has {} tokens)", id, vocab_.size());
  if (!render_special) {
    const TokenType type = vocab_.type(id);
    if (type == TokenType::Control || type == TokenType::Unknown) return {};
  }
  return pieces_[size_t(id)];
}

std::string Tokenizer::decode(std::span<const TokenId> tokens, DecodeOptions options) const {
  std::string text;
  for (const TokenId id : tokens) text += piece(id, options.render_special);
  return text;
}

}  // namespace moe::tokenizer
