// The written file: metadata llama.cpp reads, every tensor its qwen3moe / qwen3 loaders
// require (names and shapes written here from docs/reference, not from the presets code),
// storage types, determinism across thread counts and seeds.
#include <gtest/gtest.h>

#include <map>

#include "models/synth/tensor_plan.h"
#include "synth_test_util.h"

namespace moe::test {
namespace {

using Shape = std::vector<int64_t>;

struct Hparams {
  int64_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ff_exp, n_expert, n_vocab;
  bool moe, tied;
};

// The tensors llama.cpp's loader creates for the architecture (reference §3.5; qwen3 dense:
// ffn_gate/up {n_embd, n_ff}, ffn_down {n_ff, n_embd}; output.weight absent when tied).
std::map<std::string, Shape> expected_tensors(const Hparams& h) {
  std::map<std::string, Shape> t;
  t["token_embd.weight"] = {h.n_embd, h.n_vocab};
  t["output_norm.weight"] = {h.n_embd};
  if (!h.tied) t["output.weight"] = {h.n_embd, h.n_vocab};
  for (int64_t i = 0; i < h.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    t[p + "attn_norm.weight"] = {h.n_embd};
    t[p + "attn_q.weight"] = {h.n_embd, h.n_head * h.head_dim};
    t[p + "attn_k.weight"] = {h.n_embd, h.n_head_kv * h.head_dim};
    t[p + "attn_v.weight"] = {h.n_embd, h.n_head_kv * h.head_dim};
    t[p + "attn_output.weight"] = {h.n_head * h.head_dim, h.n_embd};
    t[p + "attn_q_norm.weight"] = {h.head_dim};
    t[p + "attn_k_norm.weight"] = {h.head_dim};
    t[p + "ffn_norm.weight"] = {h.n_embd};
    if (h.moe) {
      t[p + "ffn_gate_inp.weight"] = {h.n_embd, h.n_expert};
      t[p + "ffn_gate_exps.weight"] = {h.n_embd, h.n_ff_exp, h.n_expert};
      t[p + "ffn_up_exps.weight"] = {h.n_embd, h.n_ff_exp, h.n_expert};
      t[p + "ffn_down_exps.weight"] = {h.n_ff_exp, h.n_embd, h.n_expert};
    } else {
      t[p + "ffn_gate.weight"] = {h.n_embd, h.n_ff};
      t[p + "ffn_up.weight"] = {h.n_embd, h.n_ff};
      t[p + "ffn_down.weight"] = {h.n_ff, h.n_embd};
    }
  }
  return t;
}

std::map<std::string, Shape> planned(const std::vector<synth::PlannedTensor>& plan) {
  std::map<std::string, Shape> out;
  for (const auto& t : plan) out[t.name] = t.shape;
  return out;
}

TEST(SynthFile, TinyMoeHasLlamaCppKeysAndTensors) {
  ScratchDir dir("file_moe");
  write_model(dir.file("m.gguf"), "qwen3moe", "tiny");
  const gguf::Reader r(dir.file("m.gguf"));
  const auto& md = r.metadata();
  EXPECT_EQ(r.architecture(), "qwen3moe");
  EXPECT_EQ(md.get_uint("general.file_type"), 7u);  // MOSTLY_Q8_0
  EXPECT_EQ(md.get_uint("qwen3moe.embedding_length"), 256u);
  EXPECT_EQ(md.get_uint("qwen3moe.block_count"), 2u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.head_count"), 4u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.head_count_kv"), 2u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.key_length"), 64u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.value_length"), 64u);
  EXPECT_EQ(md.get_uint("qwen3moe.expert_count"), 8u);
  EXPECT_EQ(md.get_uint("qwen3moe.expert_used_count"), 2u);
  EXPECT_EQ(md.get_uint("qwen3moe.expert_feed_forward_length"), 256u);
  EXPECT_GT(md.get_uint("qwen3moe.context_length"), 0u);
  EXPECT_GT(md.get_uint("qwen3moe.feed_forward_length"), 0u);
  EXPECT_DOUBLE_EQ(md.get_double("qwen3moe.rope.freq_base"), 1e6);
  EXPECT_NEAR(md.get_double("qwen3moe.attention.layer_norm_rms_epsilon"), 1e-6, 1e-12);
  EXPECT_EQ(md.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(md.get_string("tokenizer.ggml.pre"), "qwen2");

  const auto want = expected_tensors({256, 2, 4, 2, 64, 0, 256, 8, 512, true, false});
  ASSERT_EQ(r.tensors().size(), want.size());
  for (const auto& [name, shape] : want) {
    const gguf::TensorInfo* t = r.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->n_dims, shape.size()) << name;
    for (size_t d = 0; d < shape.size(); ++d) EXPECT_EQ(t->ne[d], shape[d]) << name << " dim " << d;
    const bool f32 = shape.size() == 1 || name.find("ffn_gate_inp") != std::string::npos;
    EXPECT_EQ(t->type, f32 ? GgmlType::F32 : GgmlType::Q8_0) << name;
  }
}

TEST(SynthFile, TinyDenseIsTiedAndHasDenseFfn) {
  ScratchDir dir("file_dense");
  write_model(dir.file("d.gguf"), "qwen3", "tiny", "f16");
  const gguf::Reader r(dir.file("d.gguf"));
  EXPECT_EQ(r.architecture(), "qwen3");
  EXPECT_EQ(r.metadata().find("qwen3.expert_count"), nullptr);
  const auto want = expected_tensors({256, 2, 4, 2, 64, 768, 0, 0, 512, false, true});
  ASSERT_EQ(r.tensors().size(), want.size());
  for (const auto& [name, shape] : want) {
    const gguf::TensorInfo* t = r.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    for (size_t d = 0; d < shape.size(); ++d) EXPECT_EQ(t->ne[d], shape[d]) << name;
    EXPECT_EQ(t->type, shape.size() == 1 ? GgmlType::F32 : GgmlType::F16) << name;
  }
}

// Real-size presets are checked on the plan (what would be written) to keep the test fast.
TEST(SynthFile, RealPresetsHaveReferenceShapes) {
  struct Case {
    const char* arch;
    const char* preset;
    Hparams h;
  };
  const Case cases[] = {
      {"qwen3moe", "30b-a3b", {2048, 48, 32, 4, 128, 0, 768, 128, 151936, true, false}},
      {"qwen3moe", "coder-30b-a3b", {2048, 48, 32, 4, 128, 0, 768, 128, 151936, true, false}},
      {"qwen3moe", "235b-a22b", {4096, 94, 64, 4, 128, 0, 1536, 128, 151936, true, false}},
      {"qwen3", "0.6b", {1024, 28, 16, 8, 128, 3072, 0, 0, 151936, false, true}},
  };
  for (const auto& c : cases) {
    const auto shape = shape_of(c.arch, c.preset);
    const auto plan = synth::plan_tensors(shape, 151936, GgmlType::Q8_0, 0);
    EXPECT_EQ(planned(plan), expected_tensors(c.h)) << c.preset;
  }
  EXPECT_EQ(synth::plan_tensors(shape_of("qwen3moe", "30b-a3b"), 151936,
                                GgmlType::Q8_0, 0).size(), 579u);  // 3 + 48 * 12, as the reference counts
  const auto coder = shape_of("qwen3moe", "coder-30b-a3b");
  EXPECT_EQ(coder.context_length, 262144u);
  EXPECT_FLOAT_EQ(coder.rope_freq_base, 1e7f);
  const auto layers4 = shape_of("qwen3moe", "30b-a3b", 4);
  EXPECT_EQ(layers4.n_layer, 4u);
}

TEST(SynthFile, Q4KMixLikeLlamaQuantize) {
  const auto shape = shape_of("qwen3moe", "30b-a3b");
  std::map<std::string, GgmlType> types;
  for (const auto& t : synth::plan_tensors(shape, 151936, GgmlType::Q4_K, 0)) types[t.name] = t.type;
  EXPECT_EQ(types["output.weight"], GgmlType::Q6_K);
  EXPECT_EQ(types["token_embd.weight"], GgmlType::Q4_K);
  EXPECT_EQ(types["blk.0.ffn_gate_inp.weight"], GgmlType::F32);
  EXPECT_EQ(types["blk.0.attn_norm.weight"], GgmlType::F32);
  EXPECT_EQ(types["blk.0.attn_v.weight"], GgmlType::Q6_K);         // first eighth
  EXPECT_EQ(types["blk.0.ffn_down_exps.weight"], GgmlType::Q6_K);
  EXPECT_EQ(types["blk.7.ffn_down_exps.weight"], GgmlType::Q4_K);  // (7 - 6) % 3 != 2
  EXPECT_EQ(types["blk.8.ffn_down_exps.weight"], GgmlType::Q6_K);  // (8 - 6) % 3 == 2
  EXPECT_EQ(types["blk.47.attn_v.weight"], GgmlType::Q6_K);        // last eighth
  EXPECT_EQ(types["blk.7.attn_q.weight"], GgmlType::Q4_K);
  EXPECT_EQ(types["blk.0.ffn_up_exps.weight"], GgmlType::Q4_K);
  // Tied embeddings serve as the LM head and get its type.
  const auto dense = shape_of("qwen3", "0.6b");
  for (const auto& t : synth::plan_tensors(dense, 151936, GgmlType::Q4_K, 0)) {
    if (t.name == "token_embd.weight") {
      EXPECT_EQ(t.type, GgmlType::Q6_K);
    }
  }
}

TEST(SynthFile, RowsThatDoNotFitTheBlockFallBack) {
  const auto q8 = synth::choose_type(synth::TensorRole::Matrix, GgmlType::Q4_K, 0, 2, 96, false);
  EXPECT_EQ(q8.type, GgmlType::Q8_0);
  EXPECT_NE(q8.note.find("96"), std::string::npos);
  const auto f16 = synth::choose_type(synth::TensorRole::Matrix, GgmlType::Q8_0, 0, 2, 100, false);
  EXPECT_EQ(f16.type, GgmlType::F16);
  const auto fits = synth::choose_type(synth::TensorRole::Matrix, GgmlType::Q4_K, 0, 2, 512, false);
  EXPECT_EQ(fits.type, GgmlType::Q4_K);
  EXPECT_TRUE(fits.note.empty());
}

TEST(SynthFile, SameSeedSameBytesAnyThreadCount) {
  ScratchDir dir("determinism");
  write_model(dir.file("t1.gguf"), "qwen3moe", "tiny", "q4_k", 7, 1);
  write_model(dir.file("t2.gguf"), "qwen3moe", "tiny", "q4_k", 7, 2);
  write_model(dir.file("s8.gguf"), "qwen3moe", "tiny", "q4_k", 8, 2);
  const auto a = file_bytes(dir.file("t1.gguf")), b = file_bytes(dir.file("t2.gguf")), c = file_bytes(dir.file("s8.gguf"));
  ASSERT_GT(a.size(), 100000u);
  EXPECT_TRUE(a == b) << "1 and 2 threads wrote different files";
  ASSERT_EQ(a.size(), c.size());
  EXPECT_FALSE(a == c) << "seeds 7 and 8 wrote the same file";
  // Every weight tensor differs between the seeds, not just some.
  const gguf::Reader ra(dir.file("t1.gguf")), rc(dir.file("s8.gguf"));
  for (const auto& t : ra.tensors()) {
    const auto& u = rc.tensor(t.name);
    EXPECT_FALSE(std::equal(t.data.begin(), t.data.end(), u.data.begin())) << t.name;
  }
}

TEST(SynthFile, LayersOverrideKeepsEarlierLayersIdentical) {
  ScratchDir dir("layers");
  write_model(dir.file("l2.gguf"), "qwen3moe", "tiny", "q8_0", 3, 2, 2);
  write_model(dir.file("l3.gguf"), "qwen3moe", "tiny", "q8_0", 3, 2, 3);
  const gguf::Reader a(dir.file("l2.gguf")), b(dir.file("l3.gguf"));
  EXPECT_EQ(b.metadata().get_uint("qwen3moe.block_count"), 3u);
  EXPECT_NE(b.find_tensor("blk.2.ffn_up_exps.weight"), nullptr);
  const auto& x = a.tensor("blk.1.attn_q.weight");
  const auto& y = b.tensor("blk.1.attn_q.weight");
  EXPECT_TRUE(std::equal(x.data.begin(), x.data.end(), y.data.begin()));
}

}  // namespace
}  // namespace moe::test
