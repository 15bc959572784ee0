#include "models/synth/synth.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "core/thread_pool.h"
#include "core/units.h"
#include "gguf/writer.h"
#include "models/synth/random_weights.h"
#include "models/synth/synth_vocab.h"
#include "models/synth/tensor_plan.h"
#include "models/hparams.h"
#include "ops/cpu/quantize.h"
#include "spdlog/spdlog.h"

namespace moe::synth {
namespace {

constexpr int64_t kMaxLayers = 1024;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

void write_hyperparameters(gguf::Writer& w, const ModelShape& s, GgmlType requested, const SynthOptions& o) {
  const std::string a(arch_name(s.arch));
  w.set_string("general.architecture", a);
  w.set_string("general.type", "model");
  w.set_string("general.name", s.name);
  w.set_u32("general.file_type", file_type_of(requested));
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + ".context_length", s.context_length);
  w.set_u32(a + ".embedding_length", s.n_embd);
  w.set_u32(a + ".block_count", s.n_layer);
  w.set_u32(a + ".feed_forward_length", s.n_ff);
  w.set_u32(a + ".attention.head_count", s.n_head);
  w.set_u32(a + ".attention.head_count_kv", s.n_head_kv);
  w.set_u32(a + ".attention.key_length", s.head_dim);
  w.set_u32(a + ".attention.value_length", s.head_dim);
  w.set_f32(a + ".rope.freq_base", s.rope_freq_base);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", s.rms_norm_eps);
  if (s.is_moe()) {
    w.set_u32(a + ".expert_count", s.n_expert);
    w.set_u32(a + ".expert_used_count", s.n_expert_used);
    w.set_u32(a + ".expert_feed_forward_length", s.n_ff_exp);
  }
  if (s.arch == Arch::Qwen3Next) {
    write_qwen3next_keys(w, {.n_ff_shexp = s.n_ff_shexp, .rope_dims = s.rope_dims,
                             .full_attention_interval = s.full_attention_interval, .conv_kernel = s.ssm_conv_kernel,
                             .k_heads = s.ssm_k_heads, .v_heads = s.ssm_v_heads, .k_dim = s.ssm_head_dim,
                             .v_dim = s.ssm_head_dim});
  }
  // Provenance, so a file can be regenerated (llama.cpp ignores unknown keys).
  w.set_string("moeserve.synth.preset", s.preset);
  w.set_u64("moeserve.synth.seed", o.seed);
  w.set_string("moeserve.synth.type", o.type);
}

// Generates and stores one tensor: rows in parallel, each from its own counter-keyed stream.
void generate_tensor(ThreadPool& pool, const PlannedTensor& t, uint64_t seed, std::span<const uint32_t> outliers,
                     std::span<std::byte> out) {
  const int64_t row_len = t.shape[0];
  const int64_t n_rows = std::accumulate(t.shape.begin() + 1, t.shape.end(), int64_t(1), std::multiplies<>());
  const uint64_t rb = row_bytes(t.type, uint64_t(row_len));
  MOE_ASSERT(out.size() == rb * uint64_t(n_rows));
  const uint64_t key = hash_name(t.name);
  const std::span<const uint32_t> channels = t.outliers_apply ? outliers : std::span<const uint32_t>{};
  std::vector<std::vector<float>> scratch(size_t(pool.size()), std::vector<float>(size_t(row_len)));
  const size_t grain = size_t(std::max<int64_t>(1, 65536 / row_len));  // ~64K values per task
  parallel_chunks(pool, size_t(n_rows), grain, [&](size_t begin, size_t end, int thread) {
    std::span<float> row(scratch[size_t(thread)]);
    for (size_t r = begin; r < end; ++r) {
      if (t.row_source) {
        const auto [source, source_row] = t.row_source(r);
        fill_row(t.recipe, seed, hash_name(source), source_row, channels, row);
      } else {
        fill_row(t.recipe, seed, key, r, channels, row);
      }
      quantize_row(t.type, row, out.subspan(r * rb, rb), QuantEffort::Fast);  // random weights: no search
    }
  });
}

}  // namespace

std::vector<std::string> synth_type_names() { return {"q8_0", "q4_k", "q4_0", "q5_k", "q6_k", "f16", "bf16", "f32"}; }

GgmlType parse_synth_type(const std::string& name) {
  for (const auto& allowed : synth_type_names()) {
    if (name == allowed) return *parse_type(allowed);
  }
  fail("synth: unknown --type '{}' (choose one of: {})", name, join(synth_type_names()));
}

ModelShape resolve_shape(const SynthOptions& o) {
  const auto arch = parse_arch(o.arch);
  if (!arch) fail("synth: unknown --arch '{}' (choose qwen3moe, qwen3 or qwen3next)", o.arch);
  auto shape = find_preset(*arch, o.preset);
  if (!shape) fail("synth: --arch {} has no preset '{}' (choose one of: {})", o.arch, o.preset, join(preset_names(*arch)));
  if (o.layers) {
    if (*o.layers < 1 || *o.layers > kMaxLayers) fail("synth: --layers {} is out of range (1..{})", *o.layers, kMaxLayers);
    shape->n_layer = uint32_t(*o.layers);
  }
  return *shape;
}

SynthReport write_synth_model(const SynthOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  SynthReport report;
  report.shape = resolve_shape(o);
  const ModelShape& s = report.shape;
  const GgmlType requested = parse_synth_type(o.type);
  if (o.output.empty()) fail("synth: no output path (-o OUT.gguf)");

  gguf::Writer writer;
  write_hyperparameters(writer, s, requested, o);
  if (o.vocab_path.empty()) {
    report.n_vocab = s.n_vocab != 0 ? s.n_vocab : kSmallVocabSize;
    write_vocab(writer, build_vocab(report.n_vocab));
  } else {
    report.n_vocab = copy_vocab(writer, o.vocab_path);
    if (s.n_vocab != 0 && report.n_vocab != s.n_vocab) {
      fail("synth: {} has {} tokens but {} {} needs {}", o.vocab_path, report.n_vocab, o.arch, o.preset, s.n_vocab);
    }
  }

  if (o.fused_ssm_in && s.arch != Arch::Qwen3Next) fail("synth: --fused-ssm-in is for --arch qwen3next only");
  const std::vector<PlannedTensor> plan = plan_tensors(s, report.n_vocab, requested, o.seed, o.fused_ssm_in);
  const std::vector<uint32_t> outliers = outlier_channels(o.seed, s.n_embd);
  ThreadPool pool(o.threads);
  uint64_t total_bytes = 0;
  for (const auto& t : plan) {
    if (!t.note.empty()) report.notes.push_back(t.name + ": " + t.note);
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= uint64_t(d);
    total_bytes += n / block_size(t.type) * type_size(t.type);
  }
  spdlog::info("synth: writing {} ({} {}, {} layers, {} tensors, {}) to {} with {} threads", s.name, o.arch,
               o.preset, s.n_layer, plan.size(), format_bytes(total_bytes), o.output, pool.size());

  uint64_t done_bytes = 0;
  int last_decile = 0;
  for (const auto& t : plan) {
    writer.add_tensor(t.name, t.type, t.shape, [&](std::span<std::byte> out) {
      generate_tensor(pool, t, o.seed, outliers, out);
      done_bytes += out.size();
      const int decile = int(done_bytes * 10 / std::max<uint64_t>(total_bytes, 1));
      if (decile > last_decile && total_bytes > (uint64_t(1) << 30)) spdlog::info("synth: {}0%", decile);
      last_decile = decile;
    });
  }
  try {
    writer.write(o.output);
  } catch (...) {
    // The writer removes its temporary file on most failures; make sure of it on all of them.
    std::error_code ignored;
    std::filesystem::remove(o.output + ".tmp", ignored);
    throw;
  }
  report.n_tensors = plan.size();
  report.file_bytes = std::filesystem::file_size(o.output);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace moe::synth
