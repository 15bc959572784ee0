#include "tokenizer/token_text_index.h"

#include <bit>
#include <functional>

namespace moe::tokenizer {

int64_t TokenTextIndex::build(std::span<const std::string> texts) {
  size_t capacity = 16;
  while (capacity < texts.size() * 2) capacity *= 2;  // at most half full: short probe runs
  slots_.assign(capacity, Slot{});
  shift_ = 64 - std::countr_zero(capacity);
  const size_t mask = capacity - 1;
  for (size_t id = 0; id < texts.size(); ++id) {
    const size_t hash = std::hash<std::string_view>{}(texts[id]);
    const auto tag = uint32_t(hash >> 32);
    size_t i = home(hash);
    for (; slots_[i].id >= 0; i = (i + 1) & mask) {
      if (slots_[i].hash == tag && texts[size_t(slots_[i].id)] == texts[id]) return int64_t(id);
    }
    slots_[i] = {tag, int32_t(id)};
  }
  return -1;
}

int64_t TokenTextIndex::find(std::string_view text, std::span<const std::string> texts) const {
  const size_t hash = std::hash<std::string_view>{}(text);
  const auto tag = uint32_t(hash >> 32);
  const size_t mask = slots_.size() - 1;
  for (size_t i = home(hash); slots_[i].id >= 0; i = (i + 1) & mask) {
    if (slots_[i].hash == tag && texts[size_t(slots_[i].id)] == text) return slots_[i].id;
  }
  return -1;
}

}  // namespace moe::tokenizer
