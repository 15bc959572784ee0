// moeserve tokenize: text -> token ids with a model's vocabulary. The output matches
// llama-tokenize (`%6d -> 'piece'` per token, or `[id, id, ...]` with --ids) so the two can be
// diffed; vocab-only GGUF files work too.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text_file.h"
#include "gguf/reader.h"
#include "tokenizer/tokenizer.h"

namespace moe::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::string file;
  std::string text;
  bool has_text = false;  // TEXT was given (it may be empty)
  bool ids = false;
  bool no_bos = false;
  bool no_special = false;
};

void run_tokenize(const TokenizeArgs& args) {
  if (args.has_text == !args.file.empty()) fail("tokenize: give either TEXT or -f FILE");
  const std::string prompt = args.file.empty() ? args.text : read_text_file(args.file);

  const gguf::Reader reader(args.model);
  const auto tokenizer = tokenizer::Tokenizer::from_gguf(reader.metadata());
  // As llama-tokenize: --no-bos turns off every token the vocabulary would add (BOS and EOS).
  const auto ids = tokenizer.encode(prompt, {.add_special = !args.no_bos, .parse_special = !args.no_special});

  std::string out;
  if (args.ids) {
    out += '[';
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]\n";
  } else {
    for (const auto id : ids) {
      // Pieces are raw bytes, possibly half a UTF-8 character, exactly as llama-tokenize
      // prints them on Linux.
      out += fmt::format("{:6} -> '", id);
      out += tokenizer.piece(id);
      out += "'\n";
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  auto* cmd = app.add_subcommand("tokenize", "Split text into token ids with a model's vocabulary");
  cmd->add_option("-m,--model", args->model, "GGUF model or vocab-only file")->required();
  auto* text = cmd->add_option("text", args->text, "Text to tokenize");
  cmd->add_option("-f,--file", args->file, "Read the text from FILE (bytes as they are)");
  cmd->add_flag("--ids", args->ids, "Print only the ids, as [id, id, ...]");
  cmd->add_flag("--no-bos", args->no_bos, "Do not add BOS/EOS even if the vocabulary asks for them");
  cmd->add_flag("--no-special", args->no_special, "Treat control tokens in the text as plain text");
  cmd->callback([args, text] {
    args->has_text = text->count() > 0;
    run_tokenize(*args);
  });
}

}  // namespace moe::cli
