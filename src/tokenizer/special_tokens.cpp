#include "tokenizer/special_tokens.h"

namespace moe::tokenizer {

std::vector<Fragment> split_special_tokens(std::string_view text, const Vocab& vocab, bool parse_control) {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({0, text.size(), kNoToken});

  std::vector<Fragment> next;
  for (const TokenId id : vocab.special_tokens()) {
    if (!parse_control && vocab.type(id) != TokenType::UserDefined) continue;
    const std::string_view special = vocab.text(id);
    // Most special tokens never occur; one search of the whole text rules them out cheaply.
    if (text.find(special) == std::string_view::npos) continue;

    next.clear();
    for (const Fragment& f : fragments) {
      if (!f.is_text()) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.begin;
      while (pos < f.end) {
        const size_t match = text.substr(0, f.end).find(special, pos);
        if (match == std::string_view::npos) break;
        if (match > pos) next.push_back({pos, match, kNoToken});
        next.push_back({match, match + special.size(), id});
        pos = match + special.size();
      }
      if (pos < f.end) next.push_back({pos, f.end, kNoToken});
    }
    fragments.swap(next);
  }
  return fragments;
}

}  // namespace moe::tokenizer
