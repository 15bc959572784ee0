#pragma once
// A compiled PCRE2 pattern (RAII) in UTF + UCP mode, JIT-compiled when the library supports it,
// with a scanner that walks the matches through one subject.
#include <cstddef>
#include <memory>
#include <string_view>

// PCRE2 needs the code unit width before its header; keep that header out of ours.
struct pcre2_real_code_8;
struct pcre2_real_match_data_8;
struct pcre2_real_match_context_8;
struct pcre2_real_jit_stack_8;

namespace moe::tokenizer {

class Pcre2Regex {
 public:
  // Throws moe::Error with PCRE2's message and the offset of the problem.
  explicit Pcre2Regex(std::string_view pattern);
  ~Pcre2Regex();
  Pcre2Regex(Pcre2Regex&&) noexcept;
  Pcre2Regex& operator=(Pcre2Regex&&) noexcept;

  bool jit_compiled() const { return jit_; }

  // Finds successive matches in one subject. Each scanner owns its match data, so several
  // threads may scan with the same regex at once. The subject must be valid UTF-8 (it is not
  // checked again here) and outlive the scanner.
  class Scanner {
   public:
    Scanner(const Pcre2Regex& regex, std::string_view subject);
    ~Scanner();
    Scanner(const Scanner&) = delete;
    Scanner& operator=(const Scanner&) = delete;

    // The next match starting at or after `from`: true and [*begin, *end), or false if none.
    // Throws moe::Error if matching fails for a reason other than "no match" (resource limits).
    bool find(size_t from, size_t* begin, size_t* end);

   private:
    struct Deleter {
      void operator()(pcre2_real_match_data_8* p) const;
      void operator()(pcre2_real_match_context_8* p) const;
      void operator()(pcre2_real_jit_stack_8* p) const;
    };
    const Pcre2Regex& regex_;
    std::string_view subject_;
    std::unique_ptr<pcre2_real_match_data_8, Deleter> match_data_;
    std::unique_ptr<pcre2_real_match_context_8, Deleter> match_context_;
    std::unique_ptr<pcre2_real_jit_stack_8, Deleter> jit_stack_;
  };

 private:
  struct CodeDeleter {
    void operator()(pcre2_real_code_8* code) const;
  };
  std::unique_ptr<pcre2_real_code_8, CodeDeleter> code_;
  bool jit_ = false;
};

}  // namespace moe::tokenizer
