// moeserve run: generate text from a prompt, streamed to stdout as it comes (logs on stderr).
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "cli/commands.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "core/text_file.h"
#include "core/log.h"
#include "core/units.h"
#include "engine/generate.h"
#include "engine/model_loading.h"
#include "gguf/reader.h"
#include "models/model.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace moe::cli {
namespace {

struct RunOptions {
  std::string model, prompt, prompt_file, kv_type = "f16", cache_type_k, cache_type_v;
  int n_predict = 128, threads = 0, ctx = 0, batch = 512;
  bool chat = false, no_special = false;
  SamplingParams sampling;
  int64_t seed = -1;
  LoadOptions load;  // --prefault (default advise) and --mlock
  std::set<std::string> sampling_set;  // sampling options given on the command line
};

// The model's general.sampling.* defaults, overridden by whatever the command line set.
SamplingParams sampling_for(const RunOptions& o, const gguf::Metadata& meta) {
  SamplingParams p;
  p.apply_model_defaults(meta);
  const SamplingParams& cli = o.sampling;
  auto given = [&](const char* name) { return o.sampling_set.count(name) > 0; };
  if (given("--temp")) p.temperature = cli.temperature;
  if (given("--top-k")) p.top_k = cli.top_k;
  if (given("--top-p")) p.top_p = cli.top_p;
  if (given("--min-p")) p.min_p = cli.min_p;
  if (given("--repeat-penalty")) p.repeat_penalty = cli.repeat_penalty;
  if (given("--repeat-last-n")) p.repeat_last_n = cli.repeat_last_n;
  if (given("--presence-penalty")) p.presence_penalty = cli.presence_penalty;
  return p;
}

// The chat templates moeserve knows, recognised from tokenizer.chat_template.
std::string apply_chat_template(const gguf::Metadata& meta, const std::string& user_message) {
  const std::string_view tmpl = meta.get_string("tokenizer.chat_template", "");
  if (tmpl.find("<|im_start|>") == std::string_view::npos) {
    fail("--chat: the model's chat template is not ChatML (the only one supported so far)");
  }
  return "<|im_start|>user\n" + user_message + "<|im_end|>\n<|im_start|>assistant\n";
}

GgmlType kv_type(const RunOptions& opt) {
  const std::string k = opt.cache_type_k.empty() ? opt.kv_type : opt.cache_type_k;
  const std::string v = opt.cache_type_v.empty() ? opt.kv_type : opt.cache_type_v;
  if (k != v) fail("different K and V cache types ({} and {}) are not supported yet", k, v);
  const auto t = parse_type(k);
  if (!t) fail("unknown KV cache type '{}' (use f32, f16, q8_0 or q4_0)", k);
  return *t;
}

void run(const RunOptions& opt) {
  const gguf::Reader reader(opt.model, opt.load.backing);
  prepare_model_memory(reader, opt.load);
  const auto tokenizer = tokenizer::Tokenizer::from_gguf(reader.metadata());
  LoadOptions load = opt.load;
  if (opt.ctx > 0) load.context = opt.ctx;  // what a --vram-budget placement keeps room for
  load.batch = opt.batch;
  load.kv_type = kv_type(opt);
  auto model = open_model(reader, load);
  const ModelConfig& c = model->config();

  std::string text = opt.prompt_file.empty() ? opt.prompt : read_text_file(opt.prompt_file);
  if (opt.chat) text = apply_chat_template(reader.metadata(), text);
  const auto prompt = tokenizer.encode(text, {.add_special = true, .parse_special = !opt.no_special});
  if (prompt.empty()) fail("the prompt is empty");

  const int64_t ctx = opt.ctx > 0 ? opt.ctx : std::min<int64_t>(c.n_ctx_train, 4096);
  if (int64_t(prompt.size()) + opt.n_predict > ctx) {
    fail("the prompt ({} tokens) plus -n {} does not fit the context of {} tokens (raise -c)", prompt.size(),
         opt.n_predict, ctx);
  }
  KvCache cache = make_kv_cache(c, kv_type(opt), ctx);
  SequenceState seq(cache);
  ThreadPool pool(opt.threads > 0 ? opt.threads : int(std::thread::hardware_concurrency()));

  GenerateOptions gen;
  gen.n_predict = opt.n_predict;
  gen.batch = opt.batch;
  gen.sampling = sampling_for(opt, reader.metadata());
  gen.sampling.seed = opt.seed >= 0 ? uint64_t(opt.seed) : std::random_device{}();
  for (std::string_view name : {"<|im_end|>", "<|endoftext|>"}) {
    if (const auto id = tokenizer.vocab().find(name); id != tokenizer::kNoToken) gen.stop_tokens.push_back(id);
  }
  if (tokenizer.vocab().eos() != tokenizer::kNoToken) gen.stop_tokens.push_back(tokenizer.vocab().eos());
  spdlog::info("{}: {} layers, {} tokens of prompt, context {}, KV cache {} ({}), {} threads, seed {}", c.arch,
               c.n_layer, prompt.size(), ctx, type_name(cache.type()), format_bytes(cache.bytes()), pool.size(),
               gen.sampling.seed);

  tokenizer::StreamDecoder decoder(tokenizer);
  const auto stats = generate(*model, seq, prompt, gen, pool, [&](TokenId id) {
    const std::string piece = decoder.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  const std::string rest = decoder.finish();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::printf("\n");
  spdlog::info("prompt: {} tokens in {:.2f} s ({:.1f} tok/s); generated: {} tokens in {:.2f} s ({:.1f} tok/s)",
               stats.n_prompt, stats.prompt_seconds, stats.n_prompt / std::max(stats.prompt_seconds, 1e-9),
               stats.n_generated, stats.generate_seconds,
               stats.n_generated / std::max(stats.generate_seconds, 1e-9));
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto opt = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  cmd->add_option("-m,--model", opt->model, "GGUF model (for a split model, the first shard)")->required();
  auto* prompt = cmd->add_option("-p,--prompt", opt->prompt, "Prompt text");
  cmd->add_option("-f,--file", opt->prompt_file, "Read the prompt from a file")->excludes(prompt);
  cmd->add_option("-n,--n-predict", opt->n_predict, "Tokens to generate")->check(CLI::NonNegativeNumber);
  cmd->add_option("-t,--threads", opt->threads, "CPU threads (default: all)");
  cmd->add_option("-c,--ctx-size", opt->ctx, "Context size in tokens (default: min(model's, 4096))");
  cmd->add_option("-b,--batch-size", opt->batch, "Prompt tokens per forward pass")->check(CLI::PositiveNumber);
  cmd->add_option("--kv-type", opt->kv_type, "KV cache type: f32, f16, q8_0, q4_0");
  cmd->add_option("--cache-type-k,--ctk", opt->cache_type_k, "K cache type (as --kv-type)");
  cmd->add_option("--cache-type-v,--ctv", opt->cache_type_v, "V cache type (as --kv-type)");
  cmd->add_flag("--chat", opt->chat, "Wrap the prompt in the model's chat template and stop at the end of the turn");
  cmd->add_flag("--no-special", opt->no_special, "Treat special-token text in the prompt as plain text");
  cmd->add_option("--temp", opt->sampling.temperature, "Temperature (0: greedy)");
  cmd->add_option("--top-k", opt->sampling.top_k, "Top-k (0: off)");
  cmd->add_option("--top-p", opt->sampling.top_p, "Top-p (1: off)");
  cmd->add_option("--min-p", opt->sampling.min_p, "Min-p (0: off)");
  cmd->add_option("--repeat-penalty", opt->sampling.repeat_penalty, "Repetition penalty (1: off)");
  cmd->add_option("--repeat-last-n", opt->sampling.repeat_last_n, "Tokens the penalties look back");
  cmd->add_option("--presence-penalty", opt->sampling.presence_penalty, "Presence penalty (0: off)");
  cmd->add_option("-s,--seed", opt->seed, "Random seed (default: random, printed)");
  add_load_options(*cmd, opt->load);
  cmd->callback([opt, cmd] {
    if (opt->prompt.empty() && opt->prompt_file.empty()) fail("run: give a prompt with -p or -f");
    // Which sampling options the command line set: the file's general.sampling.* defaults
    // apply to the others (run() reads them once the model file is open).
    for (const char* name : {"--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n",
                             "--presence-penalty"}) {
      if (cmd->count(name)) opt->sampling_set.insert(name);
    }
    run(*opt);
  });
}

}  // namespace moe::cli
