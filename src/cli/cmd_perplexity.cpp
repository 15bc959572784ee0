// moeserve perplexity: the perplexity of a text file, computed and printed as llama-perplexity
// does ([1]x,[2]y,... then "Final estimate: PPL = X +/- Y"), so the two can be compared directly.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "core/text_file.h"
#include "core/log.h"
#include "engine/model_loading.h"
#include "engine/perplexity.h"
#include "gguf/reader.h"
#include "models/model.h"
#include "tokenizer/tokenizer.h"

namespace moe::cli {
namespace {

struct PerplexityCliOptions {
  std::string model, text_file, kv_type = "f16";
  int n_ctx = 512, batch = 512, threads = 0, max_chunks = 0;
  LoadOptions load;  // --prefault (default advise) and --mlock
};

void perplexity(const PerplexityCliOptions& opt) {
  const auto kv = parse_type(opt.kv_type);
  if (!kv) fail("unknown KV cache type '{}' (use f32, f16, q8_0 or q4_0)", opt.kv_type);
  const gguf::Reader reader(opt.model, opt.load.backing);
  prepare_model_memory(reader, opt.load);
  const auto tokenizer = tokenizer::Tokenizer::from_gguf(reader.metadata());
  LoadOptions load = opt.load;
  load.context = opt.n_ctx;  // what a --vram-budget placement keeps room for
  load.batch = std::min(opt.batch, opt.n_ctx);
  load.kv_type = *kv;
  auto model = open_model(reader, load);
  ThreadPool pool(opt.threads > 0 ? opt.threads : int(std::thread::hardware_concurrency()));

  // As llama-perplexity: the whole file in one go, BOS if the vocab adds it, and special-token
  // text such as "<|im_end|>" read as plain text (llama-perplexity does not parse specials; with
  // them parsed, chunk boundaries drift and the two disagree by about 1.5% on our docs).
  auto tokens = tokenizer.encode(read_text_file(opt.text_file), {.add_special = true, .parse_special = false});
  if (opt.max_chunks > 0) {  // as llama-perplexity's --chunks: only the first N chunks
    tokens.resize(std::min(tokens.size(), size_t(opt.max_chunks) * size_t(opt.n_ctx)));
  }
  PerplexityOptions p;
  p.n_ctx = opt.n_ctx;
  p.batch = opt.batch;
  p.kv_type = *kv;
  if (tokenizer.vocab().add_bos()) p.bos = tokenizer.vocab().bos();
  const int n_chunks = perplexity_chunk_count(tokens.size(), opt.n_ctx);
  spdlog::info("perplexity: {} tokens, {} chunks of {}, {} scored per chunk, batch {}, {} threads, KV {}",
               tokens.size(), n_chunks, opt.n_ctx, scored_tokens_per_chunk(opt.n_ctx), opt.batch, pool.size(),
               opt.kv_type);

  const auto result = compute_perplexity(*model, tokens, p, pool, [](int chunk, double ppl) {
    std::printf("[%d]%.4f,", chunk + 1, ppl);
    std::fflush(stdout);
  });
  std::printf("\n");
  spdlog::info("perplexity: {} tokens scored in {:.2f} s", result.n_scored, result.seconds);
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", result.perplexity, result.uncertainty);
}

}  // namespace

void add_perplexity_command(CLI::App& app) {
  auto opt = std::make_shared<PerplexityCliOptions>();
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a text file (like llama-perplexity)");
  cmd->add_option("-m,--model", opt->model, "GGUF model (for a split model, the first shard)")->required();
  cmd->add_option("-f,--file", opt->text_file, "Text file to score")->required();
  cmd->add_option("-c,--ctx-size", opt->n_ctx, "Tokens per chunk (the second half is scored)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("-b,--batch-size", opt->batch, "Tokens per forward pass")->check(CLI::PositiveNumber);
  cmd->add_option("-t,--threads", opt->threads, "CPU threads (default: all)");
  cmd->add_option("--kv-type", opt->kv_type, "KV cache type: f32, f16, q8_0, q4_0");
  cmd->add_option("--chunks", opt->max_chunks, "Score only the first N chunks (default: all)")
      ->check(CLI::NonNegativeNumber);
  add_load_options(*cmd, opt->load);
  cmd->callback([opt] { perplexity(*opt); });
}

}  // namespace moe::cli
