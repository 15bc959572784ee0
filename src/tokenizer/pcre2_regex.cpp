#include "tokenizer/pcre2_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "core/error.h"

namespace moe::tokenizer {
namespace {

// JIT matching keeps its backtracking state on a separate stack; 32 KiB is PCRE2's default
// and enough for ordinary text, but a long run of one character class ("\s+(?!\S)" over a
// megabyte of spaces) may need more, so allow it to grow.
constexpr size_t kJitStackStart = 32 * 1024;
constexpr size_t kJitStackMax = 64 * 1024 * 1024;

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buffer), size_t(n));
}

}  // namespace

void Pcre2Regex::CodeDeleter::operator()(pcre2_real_code_8* code) const { pcre2_code_free(code); }

Pcre2Regex::Pcre2Regex(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &error, &error_offset, nullptr);
  if (!code) fail("regex '{}': {} at offset {}", pattern, pcre2_message(error), error_offset);
  code_.reset(code);
  uint32_t jit_available = 0;
  pcre2_config(PCRE2_CONFIG_JIT, &jit_available);
  // JIT can still fail at run time (e.g. SELinux forbidding executable memory); then the
  // interpreter does the same work, only slower.
  jit_ = jit_available && pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Pcre2Regex::~Pcre2Regex() = default;
Pcre2Regex::Pcre2Regex(Pcre2Regex&&) noexcept = default;
Pcre2Regex& Pcre2Regex::operator=(Pcre2Regex&&) noexcept = default;

void Pcre2Regex::Scanner::Deleter::operator()(pcre2_real_match_data_8* p) const { pcre2_match_data_free(p); }
void Pcre2Regex::Scanner::Deleter::operator()(pcre2_real_match_context_8* p) const { pcre2_match_context_free(p); }
void Pcre2Regex::Scanner::Deleter::operator()(pcre2_real_jit_stack_8* p) const { pcre2_jit_stack_free(p); }

Pcre2Regex::Scanner::Scanner(const Pcre2Regex& regex, std::string_view subject)
    : regex_(regex),
      subject_(subject),
      match_data_(pcre2_match_data_create_from_pattern(regex.code_.get(), nullptr)),
      match_context_(pcre2_match_context_create(nullptr)) {
  if (!match_data_ || !match_context_) fail("out of memory creating regex match data");
  if (regex.jit_) {
    jit_stack_.reset(pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr));
    if (jit_stack_) pcre2_jit_stack_assign(match_context_.get(), nullptr, jit_stack_.get());
  }
}

Pcre2Regex::Scanner::~Scanner() = default;

bool Pcre2Regex::Scanner::find(size_t from, size_t* begin, size_t* end) {
  const int rc = pcre2_match(regex_.code_.get(), reinterpret_cast<PCRE2_SPTR>(subject_.data()), subject_.size(), from,
                             PCRE2_NO_UTF_CHECK, match_data_.get(), match_context_.get());
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("regex match failed at byte {} of {}: {}", from, subject_.size(), pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data_.get());
  *begin = ovector[0];
  *end = ovector[1];
  return true;
}

}  // namespace moe::tokenizer
