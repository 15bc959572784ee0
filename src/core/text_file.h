#pragma once
// Reading a whole text file (prompts, perplexity corpora) with an error that names it.
#include <string>

namespace moe {

// The file's bytes; throws moe::Error "PATH: cannot open: REASON".
std::string read_text_file(const std::string& path);

}  // namespace moe
