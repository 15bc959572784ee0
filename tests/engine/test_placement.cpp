// The --vram-budget plan (engine/placement.h) on tiny synth models: what fits, how the experts
// spread, what a token reads on each side, and the errors for budgets that cannot work.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/units.h"
#include "engine/placement.h"
#include "tiny_model.h"

namespace moe {
namespace {

using test::TinyModel;

uint64_t expert_tensor_bytes(const gguf::Reader& reader) {
  uint64_t total = 0;
  for (const auto& t : reader.tensors()) {
    if (t.name.find("_exps.") != std::string::npos) total += t.nbytes;
  }
  return total;
}

// What the plan needs besides experts, from a plan with room for everything.
uint64_t fixed_bytes(const PlacementPlan& p) { return p.runtime + p.dense + p.cache + p.activations; }

PlacementRequest request(uint64_t budget) {
  return {.vram_budget = budget, .context = 256, .ubatch = 64, .runtime_reserve = 1 * MiB,
          .bandwidth = {.ram_gb_s = 100, .gpu_gb_s = 1000}};
}

class PlacementTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PlacementTest, EverythingFitsInALargeBudget) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  const PlacementPlan p = plan_placement(*m.reader, c, request(64 * GiB));
  EXPECT_TRUE(std::all_of(p.vram_experts.begin(), p.vram_experts.end(), [&](int n) { return n == c.n_expert; }));
  EXPECT_EQ(p.experts_ram, 0u);
  EXPECT_EQ(p.experts_vram, expert_tensor_bytes(*m.reader));
  // Every tensor is somewhere: weights every token reads plus the experts.
  EXPECT_EQ(p.dense + p.experts_vram, m.reader->tensor_bytes());
  EXPECT_DOUBLE_EQ(p.hit_rate, 1.0);
  EXPECT_EQ(p.token_ram_bytes, 0u);
  // All on the GPU: both ceilings are the GPU's bandwidth over the bytes a token reads.
  EXPECT_NEAR(p.overlapped_tok_s, 1000e9 / double(p.token_gpu_bytes), 1e-6 * p.overlapped_tok_s);
  EXPECT_NEAR(p.serial_tok_s, p.overlapped_tok_s, 1e-6 * p.overlapped_tok_s);
}

TEST_P(PlacementTest, ExpertsSpreadEvenlyWithinTheBudget) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  const PlacementPlan all = plan_placement(*m.reader, c, request(64 * GiB));
  const uint64_t per_round = expert_tensor_bytes(*m.reader) / uint64_t(c.n_expert);  // one expert of every layer
  const uint64_t budget = fixed_bytes(all) + per_round * 5 / 2;  // two experts a layer and a half
  const PlacementPlan p = plan_placement(*m.reader, c, request(budget));
  const auto [fewest, most] = std::minmax_element(p.vram_experts.begin(), p.vram_experts.end());
  EXPECT_EQ(*fewest, 2);
  EXPECT_EQ(*most, 3);
  EXPECT_LE(p.used(), budget);
  EXPECT_GT(p.used() + p.expert_bytes, budget);  // no room was left for another expert
  EXPECT_EQ(p.experts_vram + p.experts_ram, expert_tensor_bytes(*m.reader));
  const int held = std::accumulate(p.vram_experts.begin(), p.vram_experts.end(), 0);
  EXPECT_NEAR(p.hit_rate, double(held) / double(c.n_layer * c.n_expert), 1e-9);
  // The routed bytes a token reads split between the two sides by the hit rate.
  const double routed = double(per_round) * c.n_expert_used;
  EXPECT_NEAR(double(p.token_ram_bytes), routed * (1 - p.hit_rate), 0.01 * routed);
  EXPECT_GT(p.overlapped_tok_s, p.serial_tok_s);
  EXPECT_GT(p.serial_tok_s, 0);
  EXPECT_NEAR(p.ram_bound_tok_s, 100e9 / double(p.token_ram_bytes), 1e-6 * p.ram_bound_tok_s);
  EXPECT_GT(p.ram_bound_tok_s, p.overlapped_tok_s);  // the GPU's part costs time too

  PlacementRequest given = request(budget);
  given.hit_rate = 0.75;  // a measured hit rate replaces the even-routing share
  const PlacementPlan h = plan_placement(*m.reader, c, given);
  EXPECT_NEAR(h.hit_rate, 0.75, 0.01);
  EXPECT_LT(h.token_ram_bytes, p.token_ram_bytes);
}

TEST_P(PlacementTest, NCpuMoeKeepsWholeLayersInRam) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  PlacementRequest r = request(64 * GiB);
  r.n_cpu_moe = 1;
  const PlacementPlan p = plan_placement(*m.reader, c, r);
  EXPECT_EQ(p.vram_experts[0], 0);
  for (int il = 1; il < c.n_layer; ++il) EXPECT_EQ(p.vram_experts[size_t(il)], c.n_expert);
  r.n_cpu_moe = c.n_layer;  // --cpu-moe: every expert in RAM
  const PlacementPlan cpu = plan_placement(*m.reader, c, r);
  EXPECT_EQ(cpu.experts_vram, 0u);
  EXPECT_DOUBLE_EQ(cpu.hit_rate, 0.0);
  // A budget with room for one layer's experts cannot take all but the first layer's.
  const uint64_t one_layer = expert_tensor_bytes(*m.reader) / uint64_t(c.n_layer);
  r = request(fixed_bytes(p) + one_layer + one_layer / 2);
  r.n_cpu_moe = 0;
  try {
    plan_placement(*m.reader, c, r);
    FAIL() << "an --n-cpu-moe that does not fit was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--n-cpu-moe " + std::to_string(c.n_layer - 1) + " fits"), std::string::npos)
        << e.what();
  }
}

TEST_P(PlacementTest, ABudgetTooSmallSaysWhatIsNeeded) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  const uint64_t need = fixed_bytes(plan_placement(*m.reader, c, request(64 * GiB)));
  try {
    plan_placement(*m.reader, c, request(need - 1));
    FAIL() << "a budget one byte short was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(format_bytes(need)), std::string::npos) << e.what();
  }
  const PlacementPlan none = plan_placement(*m.reader, c, request(need));  // exactly enough: no expert
  EXPECT_EQ(none.experts_vram, 0u);
  EXPECT_EQ(none.used(), need);
}

// A streamed prefill copies one layer's experts at a time into VRAM: the plan keeps room for the
// largest layer's (with a shared expert of their shape as one more, and 1 MiB of alignment
// slack), taken from the experts' share.
TEST_P(PlacementTest, StreamedPrefillReservesOneLayersExperts) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  const uint64_t budget = fixed_bytes(plan_placement(*m.reader, c, request(64 * GiB))) + 3 * MiB;
  PlacementRequest r = request(budget);
  const PlacementPlan plain = plan_placement(*m.reader, c, r);
  r.stream_prefill = true;
  const PlacementPlan streamed = plan_placement(*m.reader, c, r);
  const bool shared = m.reader->find_tensor("blk.0.ffn_gate_shexp.weight") != nullptr;
  EXPECT_EQ(plain.staging, 0u);
  EXPECT_EQ(streamed.staging, streamed.expert_bytes * uint64_t(c.n_expert + (shared ? 1 : 0)) + MiB);
  EXPECT_LE(streamed.used(), budget);
  EXPECT_LT(streamed.experts_vram, plain.experts_vram);
  EXPECT_EQ(streamed.experts_vram + streamed.experts_ram, plain.experts_vram + plain.experts_ram);
}

TEST_P(PlacementTest, TheKvCacheGrowsWithTheContext) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  PlacementRequest r = request(64 * GiB);
  const PlacementPlan p256 = plan_placement(*m.reader, c, r);
  r.context = 512;
  const PlacementPlan p512 = plan_placement(*m.reader, c, r);
  const uint64_t kv_row = uint64_t(c.n_head_kv) * uint64_t(c.head_dim) * 2;  // f16
  EXPECT_EQ(p512.cache - p256.cache, uint64_t(c.n_cache_layers) * 256 * 2 * kv_row);
  r.kv_type = GgmlType::Q8_0;
  EXPECT_LT(plan_placement(*m.reader, c, r).cache, p512.cache);
}

// The buffers of a forward pass grow with its tokens (bench -b 4096 held 1.3 GiB more than at
// 512 on the 80B: a plan for 512 went over its budget), and cover two rows of the widest
// projection a layer runs for each token (Qwen3-Next's delta-net q|k|v|z is 6 n_embd wide).
TEST_P(PlacementTest, ActivationBuffersGrowWithThePassSize) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  PlacementRequest r = request(64 * GiB);
  const PlacementPlan p64 = plan_placement(*m.reader, c, r);
  r.ubatch = 640;
  const PlacementPlan p640 = plan_placement(*m.reader, c, r);
  uint64_t widest = 0;
  for (const auto& t : m.reader->tensors()) {
    if (t.name.starts_with("blk.0.") && t.n_dims == 2 && t.name.find("_exps") == std::string::npos) {
      widest = std::max(widest, uint64_t(t.ne[1]));
    }
  }
  const uint64_t per_token = (p640.activations - p64.activations) / 576;
  EXPECT_GE(per_token, 2 * widest * sizeof(float));
  EXPECT_GE(per_token, uint64_t(c.n_expert_used) * uint64_t(c.n_ff_expert) * 2 * sizeof(float));
  // In a budget that holds every expert beside 64-token passes, 96-token passes leave fewer.
  PlacementRequest tight = request(p64.used());
  tight.ubatch = 96;
  const PlacementPlan p = plan_placement(*m.reader, c, tight);
  EXPECT_LT(p.experts_vram, p64.experts_vram);
  EXPECT_LE(p.used(), p64.used());
}

// With routing spread evenly the link cannot raise the ceiling: the PCIe experts are read from
// the same RAM the CPU reads at full speed here, and admissions change no odds. The plan keeps
// the share at 0 and every figure as without the link.
TEST_P(PlacementTest, ThePcieExpertsNeedLocalityToPay) {
  TinyModel m(GetParam(), "q8_0");
  const ModelConfig& c = m.model->config();
  const uint64_t per_round = expert_tensor_bytes(*m.reader) / uint64_t(c.n_expert);
  PlacementRequest r = request(fixed_bytes(plan_placement(*m.reader, c, request(64 * GiB))) + per_round * 3);
  const PlacementPlan plain = plan_placement(*m.reader, c, r);
  r.bandwidth.pcie_gb_s = 50;
  const PlacementPlan linked = plan_placement(*m.reader, c, r);
  EXPECT_EQ(linked.pcie_share, 0);
  EXPECT_EQ(linked.token_link_bytes, 0u);
  EXPECT_EQ(linked.token_ram_bytes, plain.token_ram_bytes);
  EXPECT_NEAR(linked.overlapped_tok_s, plain.overlapped_tok_s, 1e-9 * plain.overlapped_tok_s);
  EXPECT_NE(describe(linked, r).find("PCIe experts at 50 GB/s: at best 0 of a token's 2"), std::string::npos)
      << describe(linked, r);
}

INSTANTIATE_TEST_SUITE_P(Tiny, PlacementTest, ::testing::Values("qwen3moe", "qwen3next"));

// The link's share for one layer of Qwen3-Next-80B in 16 GiB (71 of 512 experts in VRAM, 3.34 MB
// each) on the H200 machine's bandwidths, with the published locality: at 55 GB/s two of a
// token's ten (the cache then holds over half the picks; from three the link is the slowest), a
// layer far faster than with no link; a faster link takes more; no link, none.
TEST(Placement, TheLinksShareBalancesItAgainstRam) {
  const RoutingLocality locality(512, 10);
  std::vector<CacheOutcome> outcomes;
  for (int share = 0; share <= 10; ++share) outcomes.push_back(simulate_cache(locality, 71, share, 2000, 500));
  const uint64_t dense = 35'000'000, expert = 3'342'336;
  const MachineBandwidth h200{.ram_gb_s = 114, .gpu_gb_s = 4800, .pcie_gb_s = 55};
  const LayerDecode d = fastest_share(outcomes, dense, expert, h200);
  EXPECT_EQ(d.share, 2);
  EXPECT_GT(d.picks.hits, 5.0);
  const double none = std::max(double(dense + uint64_t(outcomes[0].hits * expert)) / 4800e9,
                               outcomes[0].cpu * double(expert) / 114e9);
  EXPECT_LT(d.seconds, 0.6 * none);
  for (const CacheOutcome& o : outcomes) {  // no share does better
    const double t = std::max({double(dense + uint64_t(o.hits * expert)) / 4800e9, o.fills * double(expert) / 55e9,
                               (o.fills + o.cpu) * double(expert) / 114e9});
    EXPECT_GE(t, d.seconds * (1 - 1e-9));
  }
  EXPECT_GT(fastest_share(outcomes, dense, expert, {.ram_gb_s = 114, .gpu_gb_s = 4800, .pcie_gb_s = 400}).share, 2);
  EXPECT_EQ(fastest_share(outcomes, dense, expert, {.ram_gb_s = 114, .gpu_gb_s = 4800}).share, 0);
}

TEST(Placement, ADenseModelHasNothingToPlace) {
  TinyModel m("qwen3", "q8_0");
  EXPECT_THROW(plan_placement(*m.reader, m.model->config(), request(64 * GiB)), Error);
}

TEST(Placement, DescribeNamesEveryPart) {
  TinyModel m("qwen3moe", "q8_0");
  const PlacementRequest r = request(64 * GiB);
  const std::string text = describe(plan_placement(*m.reader, m.model->config(), r), r);
  for (const char* part : {"CUDA runtime", "weights every token reads", "KV cache", "activation buffers",
                           "routed experts in VRAM", "routed experts left in RAM", "tok/s"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  }
}

// The ceiling with the GPU's serial part: 100 t/s is 10 ms a token, 2 ms more is 83.3 t/s.
TEST(PlacementCeiling, TheSerialPartAddsToEveryToken) {
  EXPECT_NEAR(with_serial_part(100.0, 0.002), 1000.0 / 12.0, 1e-9);
  EXPECT_DOUBLE_EQ(with_serial_part(100.0, 0.0), 100.0);
  EXPECT_DOUBLE_EQ(with_serial_part(100.0, -1.0), 100.0);  // a negative time counts as none
  EXPECT_DOUBLE_EQ(with_serial_part(0.0, 0.002), 0.0);     // no ceiling stays none
  EXPECT_LT(with_serial_part(89.24, 0.0021), 89.24);
}

}  // namespace
}  // namespace moe
