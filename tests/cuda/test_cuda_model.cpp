// The whole model on the GPU against the CPU engine: tiny synth qwen3moe, qwen3 and qwen3next models,
// a 37-token prompt (one call: prefill in groups of 8 with a remainder) and 4 decode steps,
// the logits of every position compared. F32 weights agree to float rounding. Quantized
// weights use activations quantized to the same bytes on both sides, so they agree to
// rounding too until an activation sits on a quantization boundary (then one step of
// difference travels on, as between the CPU's repacked and row layouts): there the check is
// that the GPU is as close to the f64 reference as the CPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "../engine/changed_model.h"
#include "../engine/reference_qwen3next.h"
#include "../engine/tiny_model.h"
#include "../gguf/gguf_test_util.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/op_compare.h"
#include "models/cuda/gpu_model.h"
#include "models/model.h"
#include "models/synth/synth.h"

namespace moe {
namespace {

std::vector<TokenId> prompt_tokens(int n, int64_t n_vocab) {
  std::vector<TokenId> t(static_cast<size_t>(n));
  uint32_t s = 1;
  for (auto& id : t) id = TokenId((s = s * 1664525u + 1013904223u) % uint32_t(n_vocab));
  return t;
}

// Logits of every position: the prompt in one call, then one token per call.
std::vector<float> run(Model& model, std::span<const TokenId> tokens, int prompt, GgmlType kv_type = GgmlType::F16) {
  const auto& c = model.config();
  KvCache cache = make_kv_cache(c, kv_type, std::max<int64_t>(256, int64_t(tokens.size())));
  SequenceState seq(cache);
  ThreadPool pool(2);
  std::vector<float> out(tokens.size() * size_t(c.n_vocab));
  model.forward(tokens.first(size_t(prompt)), seq, Logits::All, std::span(out).first(size_t(prompt) * c.n_vocab), pool);
  for (size_t t = size_t(prompt); t < tokens.size(); ++t) {
    model.forward(tokens.subspan(t, 1), seq, Logits::Last, std::span(out).subspan(t * c.n_vocab, size_t(c.n_vocab)), pool);
  }
  return out;
}

// max |a - b| over the standard deviation of b.
double max_diff_over_std(std::span<const float> a, std::span<const float> b) {
  double mean = 0, var = 0, max_diff = 0;
  for (float v : b) mean += v;
  mean /= double(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    var += (b[i] - mean) * (b[i] - mean);
    max_diff = std::max(max_diff, std::fabs(double(a[i]) - b[i]));
  }
  return max_diff / std::sqrt(var / double(b.size()));
}

double against_reference(std::span<const float> ours, const std::vector<std::vector<double>>& ref) {
  std::vector<float> flat;
  for (const auto& row : ref) flat.insert(flat.end(), row.begin(), row.end());
  return max_diff_over_std(ours, flat);
}

using test::write_tiny_model;

class GpuModelTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(GpuModelTest, LogitsAgreeWithTheCpuEngine) {
  const auto [arch, type] = GetParam();
  test::TempDir dir;
  const gguf::Reader reader(write_tiny_model(dir, arch, type, 11));
  ASSERT_TRUE(cuda::gpu_supports(reader));
  const auto cpu = load_model(reader, ModelOptions{.repack = false});
  const auto gpu = cuda::load_gpu_model(reader, 0);
  const auto tokens = prompt_tokens(41, cpu->config().n_vocab);
  const auto on_cpu = run(*cpu, tokens, 37), on_gpu = run(*gpu, tokens, 37);
  const double diff = max_diff_over_std(on_gpu, on_cpu);
  const auto ref = test::reference_logits(reader, std::vector<int>(tokens.begin(), tokens.end()));
  const double gpu_err = against_reference(on_gpu, ref), cpu_err = against_reference(on_cpu, ref);
  std::printf("%s %s: GPU against CPU max |dlogit| / std %.2e; against the f64 reference GPU %.4f, CPU %.4f\n",
              arch.c_str(), type.c_str(), diff, gpu_err, cpu_err);
  if (type == "f32" || type == "f16") {
    // Float weights, float activations: the backends differ by summation order only, far
    // below how far either is from the f64 reference (about 1e-3 here).
    EXPECT_LT(diff, 1e-3);
    EXPECT_LT(gpu_err, 1.1 * cpu_err + 1e-4);
  } else {
    EXPECT_LT(gpu_err, 1.5 * cpu_err + 0.02);
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, GpuModelTest,
                         ::testing::Combine(::testing::Values("qwen3moe", "qwen3", "qwen3next"),
                                            ::testing::Values("f32", "q8_0", "q4_k", "f16")),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

// The hybrid placement: per layer the first n experts in VRAM, the CPU computing the others at
// the same time (cpu_experts.h). Every placement gives the all-GPU model's logits to the
// backends' rounding, prefill (grouped GEMM) and decode (graph) alike: none in VRAM (llama.cpp's
// --cpu-moe), a few, all but one, and whole layers either way (--n-cpu-moe).
TEST(HybridModel, EveryPlacementAgreesWithTheCpuAndGpuEngines) {
  test::TempDir dir;
  for (const std::string arch : {"qwen3moe", "qwen3next"}) {
    for (const std::string type : {"f32", "q8_0"}) {
      SCOPED_TRACE(arch + " " + type);
      const gguf::Reader reader(write_tiny_model(dir, arch, type, 13));
      const auto cpu = load_model(reader, ModelOptions{.repack = false});
      const auto gpu = cuda::load_gpu_model(reader, 0);
      const int n_layer = cpu->config().n_layer, n_expert = cpu->config().n_expert;
      const auto tokens = prompt_tokens(41, cpu->config().n_vocab);
      const auto on_cpu = run(*cpu, tokens, 37), on_gpu = run(*gpu, tokens, 37);
      std::vector<std::vector<int>> placements = {std::vector<int>(size_t(n_layer), 0),
                                                  std::vector<int>(size_t(n_layer), 3),
                                                  std::vector<int>(size_t(n_layer), n_expert - 1)};
      std::vector<int> split(size_t(n_layer), n_expert);
      split[0] = 0;  // --n-cpu-moe 1
      placements.push_back(split);
      for (const auto& vram : placements) {
        SCOPED_TRACE("VRAM experts a layer: " + std::to_string(vram.front()) + ", " + std::to_string(vram.back()));
        const auto hybrid = cuda::load_hybrid_model(reader, 0, {.vram_experts = vram});
        const auto on_hybrid = run(*hybrid, tokens, 37);
        const double to_gpu = max_diff_over_std(on_hybrid, on_gpu), to_cpu = max_diff_over_std(on_hybrid, on_cpu);
        std::printf("%s %s, %d..%d experts in VRAM: hybrid against GPU %.2e, against CPU %.2e\n", arch.c_str(),
                    type.c_str(), vram.front(), vram.back(), to_gpu, to_cpu);
        if (type == "f32") {
          EXPECT_LT(to_gpu, 1e-3);
          EXPECT_LT(to_cpu, 1e-3);
        } else {  // quantized: as close as the GPU engine is to the CPU's, give or take one boundary step
          EXPECT_LT(to_gpu, max_diff_over_std(on_gpu, on_cpu) + 0.05);
        }
        // The same greedy tokens as the all-GPU model at every position.
        const size_t n_vocab = size_t(cpu->config().n_vocab);
        int same = 0;
        for (size_t t = 0; t < tokens.size(); ++t) {
          const auto row = [&](const std::vector<float>& v) {
            const auto b = v.begin() + ptrdiff_t(t * n_vocab);
            return std::max_element(b, b + ptrdiff_t(n_vocab)) - b;
          };
          same += row(on_hybrid) == row(on_gpu);
        }
        EXPECT_GE(same, int(tokens.size()) - (type == "f32" ? 0 : 1));
      }
    }
  }
}

// A prompt of kStreamMinTokens or more with the experts left in RAM streamed to the GPU
// (expert_stream.h): each hybrid layer runs every expert from the staging buffer, in the
// file's layout; the decode steps after it go back to the CPU for those experts. The logits
// agree with the all-GPU engine's as the CPU-computed ones do.
TEST(HybridModel, StreamedPrefillAgreesWithTheGpuEngine) {
  test::TempDir dir;
  for (const std::string arch : {"qwen3moe", "qwen3next"}) {
    for (const std::string type : {"f32", "q8_0"}) {
      SCOPED_TRACE(arch + " " + type);
      const gguf::Reader reader(write_tiny_model(dir, arch, type, 17));
      const auto gpu = cuda::load_gpu_model(reader, 0);
      const int n_layer = gpu->config().n_layer, prompt = cuda::kStreamMinTokens + 20;
      const auto tokens = prompt_tokens(prompt + 4, gpu->config().n_vocab);
      const auto on_gpu = run(*gpu, tokens, prompt);
      // With PCIe experts auto too (the command line's default): the decode graph recorded after
      // a streamed prefill allocates nothing (it once did: CUDA refuses cudaMalloc in a capture).
      for (const auto& [in_vram, pcie_auto] : {std::pair{0, false}, std::pair{3, false}, std::pair{3, true}}) {
        const int k = gpu->config().n_expert_used;
        const auto hybrid = cuda::load_hybrid_model(reader, 0,
                                                    {.vram_experts = std::vector<int>(size_t(n_layer), in_vram),
                                                     .stream_prefill = true,
                                                     .pcie_experts = pcie_auto ? k : 0,
                                                     .pcie_auto = pcie_auto});
        const auto on_hybrid = run(*hybrid, tokens, prompt);
        const double diff = max_diff_over_std(on_hybrid, on_gpu);
        std::printf("%s %s, %d experts in VRAM, streamed prefill%s: against the GPU engine %.2e\n", arch.c_str(),
                    type.c_str(), in_vram, pcie_auto ? ", PCIe experts auto" : "", diff);
        // Every expert on the GPU in both, from other layouts: float order only (quantized
        // weights: the same blocks, one boundary step at most).
        EXPECT_LT(diff, type == "f32" ? 1e-3 : 0.1);
        // The hybrid's counters saw only the decode steps: the prefill left the CPU nothing.
        const auto split = hybrid->expert_split();
        EXPECT_EQ(split.routed_slots, uint64_t(4) * uint64_t(n_layer) * uint64_t(hybrid->config().n_expert_used));
      }
    }
  }
}

// Decode with some of the experts left in RAM read by the GPU over PCIe (--pcie-experts): one
// of a token's, or all of them (no CPU work left), next to the CPU computing the rest. Logits
// as the all-GPU engine's, with and without the expert cache (the PCIe experts landing in VRAM
// slots, computed there); bench's counters see the split.
TEST(HybridModel, PcieExpertsAgreeWithTheGpuEngine) {
  test::TempDir dir;
  for (const std::string arch : {"qwen3moe", "qwen3next"}) {
    for (const std::string type : {"f32", "q8_0", "q4_k"}) {  // (q4_k: the expert cache copies the file's rows)
      SCOPED_TRACE(arch + " " + type);
      const gguf::Reader reader(write_tiny_model(dir, arch, type, 19));
      const auto gpu = cuda::load_gpu_model(reader, 0);
      const int n_layer = gpu->config().n_layer, k = gpu->config().n_expert_used;
      const auto tokens = prompt_tokens(24, gpu->config().n_vocab);
      const auto on_gpu = run(*gpu, tokens, 16);
      // A K-quant prompt's experts: the GPU engine's GEMM and the CPU's Q8_K products round
      // differently, and the tiny Qwen3-Next carries that to 9e-2 of the logits' std (qwen3moe:
      // 1e-6); the decode steps after it agree as closely as the other types'.
      const double tolerance = type == "f32" ? 1e-3 : type == "q4_k" ? 0.2 : 0.1;
      for (const int in_vram : {0, 3}) {
        for (const int pcie : {1, k, -1}) {  // -1: auto, up to k as the balance says
          auto load = [&](bool cache) {
            return cuda::load_hybrid_model(reader, 0,
                                           {.vram_experts = std::vector<int>(size_t(n_layer), in_vram),
                                            .pcie_experts = pcie < 0 ? k : pcie,
                                            .pcie_auto = pcie < 0,
                                            .expert_cache = cache});
          };
          // (One at a time: a second model of the same file could not register its mapping.)
          auto hybrid = load(false);
          const auto on_hybrid = run(*hybrid, tokens, 16);
          const double diff = max_diff_over_std(on_hybrid, on_gpu);
          std::printf("%s %s, %d in VRAM, %d over PCIe: against the GPU engine %.2e\n", arch.c_str(), type.c_str(),
                      in_vram, pcie, diff);
          EXPECT_LT(diff, tolerance);
          // Decode steps only (the prompt's 16 tokens leave the CPU its slots): with no expert in
          // VRAM, exactly `pcie` of each token's k slots a layer. The PCIe kernels take
          // quantized weights only (their down launch fuses the SwiGLU's quantization): an f32
          // model leaves every RAM expert to the CPU.
          const auto split = hybrid->expert_split();
          EXPECT_LE(split.cpu_slots + split.pcie_slots, split.routed_slots);
          if (type == "f32") {
            EXPECT_EQ(split.pcie_slots, 0u);
          } else if (pcie < 0) {
            // auto starts at 3 of 10 (the tiny models route fewer: at least one) and moves by
            // one a step: some slots went over PCIe whichever way it moved.
            EXPECT_GT(split.pcie_slots, 0u);
          } else if (in_vram == 0) {
            EXPECT_EQ(split.pcie_slots, uint64_t(tokens.size() - 16) * uint64_t(n_layer) * uint64_t(pcie));
          } else {
            EXPECT_GT(split.pcie_slots, 0u);
          }
          if (in_vram == 0) continue;  // no slot for the cache to fill
          hybrid.reset();
          const auto cached = load(true);
          // Hits move experts from the CPU to the GPU, whose products round a little differently
          // (qwen3next q8_0: 7.7e-4 with one of two slots on the CPU, 0 with none): the same
          // tolerance against the GPU engine, not bit equality with the run above.
          const double cached_diff = max_diff_over_std(run(*cached, tokens, 16), on_gpu);
          std::printf("  with the expert cache: %.2e\n", cached_diff);
          EXPECT_LT(cached_diff, tolerance);
          if (type != "f32") {
            EXPECT_GT(cached->expert_split().pcie_slots, 0u);  // it filled slots
          }
        }
      }
    }
  }
}

// Benchmarks' routing hook (Model::set_routing_source): the same experts forced on the CPU
// engine, the GPU engine and a hybrid give the same logits, and not those of the router's own
// choice.
TEST(GpuModel, ARoutingSourceReplacesTheRouterAsOnTheCpu) {
  test::TempDir dir;
  for (const std::string arch : {"qwen3moe", "qwen3next"}) {
    SCOPED_TRACE(arch);
    const gguf::Reader reader(write_tiny_model(dir, arch, "f32", 23));
    const auto cpu = load_model(reader, ModelOptions{.repack = false});
    const auto gpu = cuda::load_gpu_model(reader, 0);
    const int n_layer = cpu->config().n_layer;
    const auto hybrid = cuda::load_hybrid_model(reader, 0, {.vram_experts = std::vector<int>(size_t(n_layer), 3)});
    const auto tokens = prompt_tokens(20, cpu->config().n_vocab);
    const auto plain = run(*gpu, tokens, 16);
    test::FixedRouting forced({6, 2});  // one expert the hybrid holds in VRAM (2), one it leaves to the CPU (6)
    for (Model* m : {cpu.get(), gpu.get(), hybrid.get()}) m->set_routing_source(&forced);
    const auto on_cpu = run(*cpu, tokens, 16), on_gpu = run(*gpu, tokens, 16), on_hybrid = run(*hybrid, tokens, 16);
    EXPECT_LT(max_diff_over_std(on_gpu, on_cpu), 1e-3);
    EXPECT_LT(max_diff_over_std(on_hybrid, on_gpu), 1e-3);
    EXPECT_GT(max_diff_over_std(on_gpu, plain), 1e-2);
    const auto split = hybrid->expert_split();  // every token: one slot in VRAM, one on the CPU
    EXPECT_EQ(split.cpu_slots * 2, split.routed_slots);
  }
}

// The expert cache (--expert-cache): with every token routed to experts 6 and 2 and experts 0-2
// in VRAM, the first decode step reads expert 6 over PCIe into a slot (evicting 0, the least
// recently used, never 2, which the step uses) and every later step finds it in VRAM; the
// logits stay the all-GPU engine's through the swap.
TEST(HybridModel, TheExpertCacheTakesInWhatTheRoutingUses) {
  test::TempDir dir;
  for (const std::string arch : {"qwen3moe", "qwen3next"}) {
    SCOPED_TRACE(arch);
    const gguf::Reader reader(write_tiny_model(dir, arch, "q8_0", 29));
    const auto gpu = cuda::load_gpu_model(reader, 0);
    const int n_layer = gpu->config().n_layer;
    const auto hybrid = cuda::load_hybrid_model(
        reader, 0, {.vram_experts = std::vector<int>(size_t(n_layer), 3), .pcie_experts = 1, .expert_cache = true});
    test::FixedRouting forced({6, 2});
    gpu->set_routing_source(&forced);
    hybrid->set_routing_source(&forced);
    const auto tokens = prompt_tokens(30, gpu->config().n_vocab);
    const auto on_gpu = run(*gpu, tokens, 10), on_hybrid = run(*hybrid, tokens, 10);
    EXPECT_LT(max_diff_over_std(on_hybrid, on_gpu), 0.1);
    // 10 prompt tokens (one pass: the CPU computes expert 6) and 20 decode steps, 2 slots each
    // a layer: one copy over PCIe a layer, then hits only.
    const auto split = hybrid->expert_split();
    EXPECT_EQ(split.routed_slots, uint64_t(30) * uint64_t(n_layer) * 2u);
    EXPECT_EQ(split.cpu_slots, uint64_t(10) * uint64_t(n_layer));
    EXPECT_EQ(split.pcie_slots, uint64_t(n_layer));
    // The GPU's side of those steps, from its clock: its experts and its serial part took time.
    EXPECT_GT(split.gpu_experts_s, 0.0);
    EXPECT_GT(split.gpu_serial_s, 0.0);
    EXPECT_GE(split.gpu_wait_s, 0.0);
  }
}

// Decode after a long prompt: the cache's capacity (1024) splits decode attention over blocks
// (16 chunks a head of up to 44 positions, merged by the last block), which must agree with the
// CPU as the one-block kernel does.
TEST(GpuModel, LongContextDecodeAgreesWithTheCpuEngine) {
  test::TempDir dir;
  for (const std::string arch : {"qwen3moe", "qwen3next"}) {
    SCOPED_TRACE(arch);
    const gguf::Reader reader(write_tiny_model(dir, arch, "f32", 5));
    const auto cpu = load_model(reader, ModelOptions{.repack = false});
    const auto gpu = cuda::load_gpu_model(reader, 0);
    const int prompt = 700, decoded = 6;
    const auto tokens = prompt_tokens(prompt + decoded, cpu->config().n_vocab);
    const auto on_cpu = run(*cpu, tokens, prompt), on_gpu = run(*gpu, tokens, prompt);
    const size_t first = size_t(prompt) * size_t(cpu->config().n_vocab);
    EXPECT_LT(max_diff_over_std(std::span(on_gpu).subspan(first), std::span(on_cpu).subspan(first)), 1e-3);
  }
}

TEST(GpuModel, RefusesWhatItCannotRun) {
  test::TempDir dir;
  synth::SynthOptions o;
  o.arch = "qwen3next";
  o.preset = "tiny";
  o.fused_ssm_in = true;  // the legacy layout: the CPU runs it, the GPU does not
  o.output = dir.file("n.gguf");
  o.threads = 2;
  synth::write_synth_model(o);
  const gguf::Reader reader(o.output);
  std::string why;
  EXPECT_FALSE(cuda::gpu_supports(reader, &why));
  EXPECT_NE(why.find("ssm_in"), std::string::npos);
  EXPECT_THROW(cuda::load_gpu_model(reader, 0), Error);
}

// A q8_0 or q4_0 KV cache on the GPU holds the CPU cache's bytes: the two engines agree as
// closely as with f16 caches (float weights: a key a rounding step apart now and then is the
// only difference, a larger step in q4_0), through a prefill (the prefill kernel), a decode
// split over blocks, and a switch of the same model between cache types. The f16 run differs:
// the type is really used.
TEST(GpuModel, QuantizedKvCachesAgreeWithTheCpuEngine) {
  test::TempDir dir;
  for (const std::string arch : {"qwen3moe", "qwen3next"}) {
    const gguf::Reader reader(write_tiny_model(dir, arch, "f32", 6));
    const auto cpu = load_model(reader, ModelOptions{.repack = false});
    const auto gpu = cuda::load_gpu_model(reader, 0);
    const int prompt = 300, decoded = 6;
    const auto tokens = prompt_tokens(prompt + decoded, cpu->config().n_vocab);
    const auto gpu_f16 = run(*gpu, tokens, prompt);
    for (const GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
      SCOPED_TRACE(fmt::format("{}, {} KV", arch, type_name(type)));
      const auto on_cpu = run(*cpu, tokens, prompt, type), on_gpu = run(*gpu, tokens, prompt, type);
      const double diff = max_diff_over_std(on_gpu, on_cpu), against_f16 = max_diff_over_std(on_gpu, gpu_f16);
      std::printf("%s: %s KV, GPU against CPU max |dlogit| / std %.2e; against the GPU's f16 KV %.2e\n", arch.c_str(),
                  std::string(type_name(type)).c_str(), diff, against_f16);
      EXPECT_LT(diff, type == GgmlType::Q8_0 ? 1e-2 : 3e-2);
      EXPECT_GT(against_f16, 3 * diff);
    }
  }
}

// Types the GPU does not keep (f32) are refused with a clear error, never silently run in
// another type.
TEST(GpuModel, RefusesAKvCacheTypeItDoesNotKeep) {
  test::TempDir dir;
  const gguf::Reader reader(write_tiny_model(dir, "qwen3moe", "q8_0", 0));
  const auto gpu = cuda::load_gpu_model(reader, 0);
  const auto& c = gpu->config();
  KvCache cache = make_kv_cache(c, GgmlType::F32, 64);
  SequenceState seq(cache);
  ThreadPool pool(1);
  std::vector<float> logits(size_t(c.n_vocab));
  const std::vector<TokenId> tokens{1, 2, 3};
  try {
    gpu->forward(tokens, seq, Logits::Last, logits, pool);
    ADD_FAILURE() << "an f32 KV cache ran on the GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f32 KV cache is not supported on the GPU"), std::string::npos) << e.what();
  }
}

// A recurrent model cannot go back: a sequence truncated to an earlier position is refused,
// and starting again at position 0 gives the first run's logits (the state was reset).
TEST(GpuModel, Qwen3NextStateResetsAndRefusesTruncation) {
  test::TempDir dir;
  const gguf::Reader reader(write_tiny_model(dir, "qwen3next", "f32", 0));
  const auto gpu = cuda::load_gpu_model(reader, 0);
  const auto& c = gpu->config();
  const auto tokens = prompt_tokens(6, c.n_vocab);
  KvCache cache = make_kv_cache(c, GgmlType::F16, 64);
  ThreadPool pool(1);
  std::vector<float> first(size_t(c.n_vocab)), again(size_t(c.n_vocab));
  SequenceState seq(cache);
  gpu->forward(tokens, seq, Logits::Last, first, pool);
  seq.truncate(3);
  EXPECT_THROW(gpu->forward(std::span(tokens).subspan(3), seq, Logits::Last, again, pool), Error);
  SequenceState fresh(cache);
  gpu->forward(tokens, fresh, Logits::Last, again, pool);
  EXPECT_EQ(first, again);
}

// The op-by-op comparison against the CPU engine (moeserve compare): every checkpoint within
// the threshold (f32 weights: float rounding only), prompts through the GEMM (12 tokens) and
// the decode kernels (5), then decode steps (the fused launches); and a norm weight changed in
// the GPU's copy of the file is found at that norm's output, nothing before it above the
// threshold: the GPU's checkpoints sit where the CPU's do.
TEST(GpuModel, OpByOpAgainstTheCpuEngineFindsAPlantedChange) {
  for (const std::string arch : {"qwen3moe", "qwen3", "qwen3next"}) {
    for (int prompt : {12, 5}) {
      SCOPED_TRACE(arch + ", prompt " + std::to_string(prompt));
      test::TempDir dir;
      const std::string path = write_tiny_model(dir, arch, "f32", 4);
      const std::string norm = arch == "qwen3next" ? "blk.1.post_attention_norm.weight" : "blk.1.ffn_norm.weight";
      test::write_changed_copy(path, norm, dir.file("changed.gguf"));
      const gguf::Reader reader(path), changed(dir.file("changed.gguf"));
      ThreadPool pool(2);
      const OpCompareOptions options{.prompt_tokens = prompt, .decode_steps = 3, .seed = 2, .threshold = 1e-4};
      {
        const auto cpu = load_model(reader, ModelOptions{.repack = false});
        const auto gpu = cuda::load_gpu_model(reader, 0);
        const OpCompareResult r = compare_ops(*cpu, *gpu, options, pool);
        EXPECT_EQ(r.diffs.size(), size_t(4) * size_t(2 + 4 * cpu->config().n_layer));
        double worst = 0;
        for (const TensorDiff& d : r.diffs) worst = std::max(worst, d.rel_rms);
        std::printf("%s, prompt %d: %zu checkpoints, largest relative RMS difference %.2e\n", arch.c_str(), prompt,
                    r.diffs.size(), worst);
        EXPECT_EQ(r.first_divergent, -1) << r.diffs[size_t(std::max(0, r.first_divergent))].name;
      }
      const auto cpu = load_model(reader, ModelOptions{.repack = false});
      const auto gpu = cuda::load_gpu_model(changed, 0);
      const OpCompareResult r = compare_ops(*cpu, *gpu, options, pool);
      ASSERT_GE(r.first_divergent, 0);
      EXPECT_EQ(r.diffs[size_t(r.first_divergent)].name, "blk.1.ffn_in");
      EXPECT_EQ(r.diffs[size_t(r.first_divergent)].step, 0);
    }
  }
}

}  // namespace
}  // namespace moe
