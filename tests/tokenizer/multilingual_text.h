#pragma once
// Pseudo-random multilingual text for long-input tests and the tokenizer benchmark.
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/utf8.h"

namespace moe::tokenizer::test {

// About `bytes` of pseudo-random text: English-like words, code, numbers and runs of Chinese,
// Cyrillic, Arabic, Hindi and emoji, with a fixed seed so that runs are comparable. Random
// words keep the per-call word cache honest (real prose repeats words even more).
inline std::string multilingual_text(size_t bytes) {
  std::mt19937 rng(42);
  const std::vector<std::string> syllables = {"th", "e", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es",
                                              "or", "te", "of", "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng"};
  const std::vector<std::pair<uint32_t, uint32_t>> scripts = {
      {0x4E00, 0x9FFF}, {0x0430, 0x044F}, {0x0627, 0x064A}, {0x0905, 0x0939}, {0x1F600, 0x1F64F}};
  std::string s;
  while (s.size() < bytes) {
    const unsigned kind = rng() % 10;
    if (kind < 6) {  // an English-like word
      s += ' ';
      if (rng() % 5 == 0) s += std::string_view("The ");
      for (unsigned n = 1 + rng() % 4; n > 0; --n) s += syllables[rng() % syllables.size()];
      if (rng() % 8 == 0) s += rng() % 2 ? "," : ".\n";
    } else if (kind == 6) {
      s += ' ';
      s += std::to_string(rng() % 100000);
    } else if (kind == 7) {
      s += "\n    if (x[i] != y) { return f(x, ";
      s += std::to_string(rng() % 100);
      s += "); }";
    } else {
      const auto [lo, hi] = scripts[rng() % scripts.size()];
      s += ' ';
      for (unsigned n = 2 + rng() % 6; n > 0; --n) append_utf8(s, lo + rng() % (hi - lo + 1));
    }
  }
  return s;
}

}  // namespace moe::tokenizer::test
