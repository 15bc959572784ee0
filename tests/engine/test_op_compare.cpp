// The op-by-op comparison (engine/op_compare.h) on the CPU engine: two copies of one model agree
// at every checkpoint, bit for bit; a model with one norm weight changed is caught at exactly
// that norm's output, and nothing before it differs.
#include <gtest/gtest.h>

#include <cmath>

#include "../gguf/gguf_test_util.h"
#include "changed_model.h"
#include "core/error.h"
#include "engine/op_compare.h"
#include "models/model.h"
#include "models/synth/synth.h"

namespace moe {
namespace {

std::string synth_model(test::TempDir& dir, const std::string& arch) {
  synth::SynthOptions o;
  o.arch = arch;
  o.preset = "tiny";
  o.type = "q8_0";
  o.seed = 5;
  o.layers = 3;
  o.threads = 2;
  o.output = dir.file(arch + ".gguf");
  synth::write_synth_model(o);
  return o.output;
}

class OpCompare : public testing::TestWithParam<const char*> {};

TEST_P(OpCompare, TwoCopiesAgreeAndAChangedNormIsFoundWhereItActs) {
  const std::string arch = GetParam();
  test::TempDir dir;
  const std::string path = synth_model(dir, arch);
  const std::string norm = arch == std::string("qwen3next") ? "blk.1.post_attention_norm.weight" : "blk.1.ffn_norm.weight";
  const std::string changed = dir.file("changed.gguf");
  test::write_changed_copy(path, norm, changed);
  const gguf::Reader ra(path), rb(path), rc(changed);
  auto a = load_model(ra), b = load_model(rb), c = load_model(rc);
  ThreadPool one(1), two(2);
  const OpCompareOptions options{.prompt_tokens = 5, .decode_steps = 2, .seed = 3};

  const OpCompareResult same = compare_ops(*a, *b, options, two);
  const int layers = a->config().n_layer;
  // Per step: embd, four per layer, logits.
  ASSERT_EQ(same.diffs.size(), size_t(options.decode_steps + 1) * size_t(2 + 4 * layers));
  EXPECT_EQ(same.first_divergent, -1);
  for (const TensorDiff& d : same.diffs) EXPECT_EQ(d.rel_rms, 0.0) << d.name << " step " << d.step;
  EXPECT_EQ(same.diffs[1].name, "blk.0.attn_in");
  EXPECT_EQ(same.diffs[1].count, size_t(5 * a->config().n_embd));  // the prompt's rows

  // The models are fresh for the second comparison (new sequences): a -> c.
  auto a2 = load_model(ra);
  const OpCompareResult r = compare_ops(*a2, *c, options, one);
  ASSERT_GE(r.first_divergent, 0);
  const TensorDiff& first = r.diffs[size_t(r.first_divergent)];
  EXPECT_EQ(first.name, "blk.1.ffn_in");
  EXPECT_EQ(first.step, 0);
  EXPECT_GT(first.rel_rms, options.threshold);
  for (int i = 0; i < r.first_divergent; ++i) EXPECT_EQ(r.diffs[size_t(i)].rel_rms, 0.0) << r.diffs[size_t(i)].name;
}

INSTANTIATE_TEST_SUITE_P(Architectures, OpCompare, testing::Values("qwen3moe", "qwen3next", "qwen3"));

TEST(OpCompare, DiffsCountNaNsAndRefuseMismatchedTensors) {
  const std::vector<float> a{1, 2, 3}, b{1, 2, 3.5f}, nan{1, NAN, 3};
  EXPECT_EQ(diff_tensors("x", 0, a, a).rel_rms, 0.0);
  const TensorDiff d = diff_tensors("x", 0, a, b);
  EXPECT_NEAR(d.rel_rms, 0.5 / std::sqrt(14.0), 1e-12);
  EXPECT_EQ(d.max_abs, 0.5);
  EXPECT_FALSE(diff_tensors("x", 0, a, nan).rel_rms <= 1.0);  // NaN: never within a threshold
  EXPECT_THROW(diff_tensors("x", 0, a, std::vector<float>{1, 2}), Error);
  const std::vector<float> zero{0, 0};
  EXPECT_EQ(diff_tensors("z", 0, zero, zero).rel_rms, 0.0);
  EXPECT_TRUE(std::isinf(diff_tensors("z", 0, zero, std::vector<float>{0, 1}).rel_rms));
}

}  // namespace
}  // namespace moe
