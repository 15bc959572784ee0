#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace moe::tokenizer {

std::string Utf8StreamAssembler::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const Utf8Step step = decode_utf8(std::string_view(pending_).substr(pos));
    if (step.kind == Utf8Step::Kind::Incomplete) break;  // wait for the next token
    if (step.kind == Utf8Step::Kind::Valid) {
      out.append(pending_, pos, step.length);
    } else {
      out.append(kReplacementCharacter);
    }
    pos += step.length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string Utf8StreamAssembler::finish() {
  // What is left is one valid but truncated prefix: a single maximal subpart, one U+FFFD.
  std::string out = pending_.empty() ? std::string() : std::string(kReplacementCharacter);
  pending_.clear();
  return out;
}

}  // namespace moe::tokenizer
