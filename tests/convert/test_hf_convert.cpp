// convert: tiny HF checkpoints written by the test (per-expert and fused expert layouts, sharded
// and single-file, F16/BF16/F32 sources) -> GGUF; keys, names, shapes, types and every value.
#include <gtest/gtest.h>

#include "core/error.h"
#include "formats/hf_convert.h"
#include "gguf/reader.h"
#include "hf_fixture.h"
#include "ops/cpu/quantize.h"
#include "tokenizer/tokenizer.h"

namespace moe::test {
namespace {

using F = HfFixture;

std::string convert(const HfFixture& fx, const std::string& out_name, GgmlType type,
                    formats::ConvertSummary* summary = nullptr) {
  const std::string out = fx.path(out_name);
  auto s = formats::convert_hf_to_gguf({.hf_dir = fx.dir(), .out_path = out, .type = type});
  if (summary) *summary = s;
  return out;
}

std::string convert_error(const HfFixture& fx) {
  try {
    convert(fx, "err.gguf", GgmlType::F16);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A tensor's elements as floats, whatever its GGUF type.
std::vector<float> values_of(const gguf::TensorInfo& t) {
  std::vector<float> out(size_t(t.n_elements()));
  const auto row = t.row_bytes();
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    dequantize_row(t.type, t.data.subspan(size_t(r) * row, row), std::span(out).subspan(size_t(r * t.ne[0]), size_t(t.ne[0])));
  }
  return out;
}

std::vector<int64_t> shape_of(const gguf::TensorInfo& t) { return {t.ne.begin(), t.ne.begin() + t.n_dims}; }

// The GGUF tensor must hold exactly `expected` (row-major HF order == ggml order).
void expect_values(const gguf::Reader& r, const std::string& name, const std::vector<float>& expected) {
  const auto v = values_of(r.tensor(name));
  ASSERT_EQ(v.size(), expected.size()) << name;
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], expected[i]) << name << " element " << i;
}

TEST(HfConvert, MoePerExpertShardedF16) {
  HfFixture fx({.moe = true, .fused_experts = false, .n_shards = 3, .dtype = "F16"});
  fx.write();
  formats::ConvertSummary summary;
  const gguf::Reader r(convert(fx, "moe.gguf", GgmlType::F16, &summary));
  const auto& md = r.metadata();
  EXPECT_EQ(md.get_string("general.architecture"), "qwen3moe");
  EXPECT_EQ(md.get_uint("qwen3moe.block_count"), 2u);
  EXPECT_EQ(md.get_uint("qwen3moe.context_length"), 4096u);
  EXPECT_EQ(md.get_uint("qwen3moe.embedding_length"), 64u);
  EXPECT_EQ(md.get_uint("qwen3moe.feed_forward_length"), 96u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.head_count"), 4u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.head_count_kv"), 2u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.key_length"), 16u);
  EXPECT_EQ(md.get_uint("qwen3moe.attention.value_length"), 16u);
  EXPECT_EQ(md.get_uint("qwen3moe.expert_count"), 4u);
  EXPECT_EQ(md.get_uint("qwen3moe.expert_used_count"), 2u);
  EXPECT_EQ(md.get_uint("qwen3moe.expert_feed_forward_length"), 32u);
  EXPECT_EQ(md.get_double("qwen3moe.rope.freq_base"), 1e6);
  EXPECT_EQ(float(md.get_double("qwen3moe.attention.layer_norm_rms_epsilon")), 1e-6f);
  EXPECT_EQ(md.require("qwen3moe.block_count").type(), gguf::ValueType::U32);
  EXPECT_EQ(md.require("qwen3moe.rope.freq_base").type(), gguf::ValueType::F32);
  EXPECT_EQ(md.get_uint("general.file_type"), 1u);
  EXPECT_EQ(md.get_uint("general.quantization_version"), 2u);
  EXPECT_EQ(md.get_int("general.sampling.top_k"), 20);
  EXPECT_FLOAT_EQ(float(md.get_double("general.sampling.top_p")), 0.95f);
  EXPECT_FLOAT_EQ(float(md.get_double("general.sampling.temp")), 0.6f);
  EXPECT_EQ(md.find("qwen3moe.rope.dimension_count"), nullptr);

  // 3 global + 12 per layer, as llama.cpp's qwen3moe expects.
  EXPECT_EQ(r.tensors().size(), 3u + 12u * 2u);
  EXPECT_EQ(summary.n_tensors, r.tensors().size());
  EXPECT_TRUE(summary.fallbacks.empty());
  for (const auto& [name, shape, type] : std::vector<std::tuple<std::string, std::vector<int64_t>, GgmlType>>{
           {"token_embd.weight", {64, 300}, GgmlType::F16},
           {"output.weight", {64, 300}, GgmlType::F16},
           {"output_norm.weight", {64}, GgmlType::F32},
           {"blk.1.attn_norm.weight", {64}, GgmlType::F32},
           {"blk.1.ffn_norm.weight", {64}, GgmlType::F32},
           {"blk.1.attn_q.weight", {64, 64}, GgmlType::F16},
           {"blk.1.attn_k.weight", {64, 32}, GgmlType::F16},
           {"blk.1.attn_v.weight", {64, 32}, GgmlType::F16},
           {"blk.1.attn_output.weight", {64, 64}, GgmlType::F16},
           {"blk.1.attn_q_norm.weight", {16}, GgmlType::F32},
           {"blk.1.attn_k_norm.weight", {16}, GgmlType::F32},
           {"blk.1.ffn_gate_inp.weight", {64, 4}, GgmlType::F32},
           {"blk.1.ffn_gate_exps.weight", {64, 32, 4}, GgmlType::F16},
           {"blk.1.ffn_up_exps.weight", {64, 32, 4}, GgmlType::F16},
           {"blk.1.ffn_down_exps.weight", {32, 64, 4}, GgmlType::F16}}) {
    const auto& t = r.tensor(name);
    EXPECT_EQ(shape_of(t), shape) << name;
    EXPECT_EQ(t.type, type) << name;
  }

  // Every plain tensor: values exact (F16 input to F16/F32 output loses nothing).
  const auto& p = fx.params();
  expect_values(r, "token_embd.weight", p.at("model.embed_tokens.weight").values);
  expect_values(r, "output.weight", p.at("lm_head.weight").values);
  expect_values(r, "output_norm.weight", p.at("model.norm.weight").values);
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".", h = "model.layers." + std::to_string(l) + ".";
    expect_values(r, b + "attn_norm.weight", p.at(h + "input_layernorm.weight").values);
    expect_values(r, b + "ffn_norm.weight", p.at(h + "post_attention_layernorm.weight").values);
    expect_values(r, b + "attn_q.weight", p.at(h + "self_attn.q_proj.weight").values);
    expect_values(r, b + "attn_k.weight", p.at(h + "self_attn.k_proj.weight").values);
    expect_values(r, b + "attn_v.weight", p.at(h + "self_attn.v_proj.weight").values);
    expect_values(r, b + "attn_output.weight", p.at(h + "self_attn.o_proj.weight").values);
    expect_values(r, b + "attn_q_norm.weight", p.at(h + "self_attn.q_norm.weight").values);
    expect_values(r, b + "attn_k_norm.weight", p.at(h + "self_attn.k_norm.weight").values);
    expect_values(r, b + "ffn_gate_inp.weight", p.at(h + "mlp.gate.weight").values);
    // Expert stacking, element by element: ggml {c, row, e} == HF expert e [row][c].
    for (const auto& [gguf_name, kind, rows, cols] :
         std::vector<std::tuple<std::string, std::string, int64_t, int64_t>>{
             {"ffn_gate_exps", "gate_proj", F::kFfExp, F::kEmbd},
             {"ffn_up_exps", "up_proj", F::kFfExp, F::kEmbd},
             {"ffn_down_exps", "down_proj", F::kEmbd, F::kFfExp}}) {
      const auto v = values_of(r.tensor(b + gguf_name + ".weight"));
      for (int e = 0; e < F::kExperts; ++e) {
        const auto& src = fx.expert(l, e, kind).values;
        for (int64_t row = 0; row < rows; ++row) {
          for (int64_t c = 0; c < cols; ++c) {
            ASSERT_EQ(v[size_t((e * rows + row) * cols + c)], src[size_t(row * cols + c)])
                << b << gguf_name << " expert " << e << " row " << row << " col " << c;
          }
        }
      }
    }
  }
}

TEST(HfConvert, FusedExpertLayoutGivesIdenticalTensors) {
  HfFixture per_expert({.moe = true, .fused_experts = false, .n_shards = 1});
  HfFixture fused({.moe = true, .fused_experts = true, .n_shards = 2});
  per_expert.write();
  fused.write();
  const gguf::Reader a(convert(per_expert, "a.gguf", GgmlType::F32));
  const gguf::Reader b(convert(fused, "b.gguf", GgmlType::F32));
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const auto& t : a.tensors()) {
    const auto& u = b.tensor(t.name);
    EXPECT_EQ(shape_of(t), shape_of(u)) << t.name;
    EXPECT_EQ(u.type, GgmlType::F32) << t.name;
    ASSERT_EQ(t.nbytes, u.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(t.data.data(), u.data.data(), t.nbytes), 0) << t.name;
  }
  // And directly: up_exps of expert 3 comes from the second half of its gate_up block.
  const auto v = values_of(b.tensor("blk.0.ffn_up_exps.weight"));
  const auto& src = fused.expert(0, 3, "up_proj").values;
  EXPECT_TRUE(std::equal(src.begin(), src.end(), v.begin() + 3 * F::kFfExp * F::kEmbd));
}

TEST(HfConvert, DenseTiedBf16ToBf16KeepsBits) {
  HfFixture fx({.moe = false, .n_shards = 1, .dtype = "BF16", .tied = true});
  fx.write();
  const gguf::Reader r(convert(fx, "dense.gguf", GgmlType::BF16));
  EXPECT_EQ(r.metadata().get_string("general.architecture"), "qwen3");
  EXPECT_EQ(r.metadata().get_uint("qwen3.feed_forward_length"), 96u);
  EXPECT_EQ(r.metadata().find("qwen3.expert_count"), nullptr);
  EXPECT_EQ(r.metadata().get_uint("general.file_type"), 32u);
  EXPECT_EQ(r.find_tensor("output.weight"), nullptr);  // tied: llama.cpp reuses token_embd
  EXPECT_EQ(r.tensors().size(), 2u + 11u * 2u);
  EXPECT_EQ(r.tensor("blk.0.ffn_down.weight").type, GgmlType::BF16);
  EXPECT_EQ(shape_of(r.tensor("blk.0.ffn_down.weight")), (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(shape_of(r.tensor("blk.0.ffn_gate.weight")), (std::vector<int64_t>{64, 96}));
  expect_values(r, "blk.1.ffn_down.weight", fx.params().at("model.layers.1.mlp.down_proj.weight").values);
  expect_values(r, "blk.1.ffn_up.weight", fx.params().at("model.layers.1.mlp.up_proj.weight").values);
  expect_values(r, "blk.0.attn_k_norm.weight", fx.params().at("model.layers.0.self_attn.k_norm.weight").values);
}

TEST(HfConvert, Q8_0MatchesTheReferenceQuantizerAndKeepsRouterF32) {
  HfFixture fx({.moe = true});
  fx.write();
  const gguf::Reader r(convert(fx, "q8.gguf", GgmlType::Q8_0));
  EXPECT_EQ(r.metadata().get_uint("general.file_type"), 7u);
  EXPECT_EQ(r.tensor("blk.0.ffn_gate_inp.weight").type, GgmlType::F32);
  EXPECT_EQ(r.tensor("blk.0.attn_norm.weight").type, GgmlType::F32);
  const auto& t = r.tensor("blk.0.ffn_down_exps.weight");
  ASSERT_EQ(t.type, GgmlType::Q8_0);
  // Row 0 of expert 2's down_proj, quantized independently, must be the bytes in the file.
  const auto& src = fx.expert(0, 2, "down_proj").values;
  std::vector<std::byte> expected(row_bytes(GgmlType::Q8_0, F::kFfExp));
  quantize_row(GgmlType::Q8_0, std::span(src).first(F::kFfExp), expected);
  const size_t row = size_t(2 * F::kEmbd);
  EXPECT_EQ(std::memcmp(t.data.data() + row * expected.size(), expected.data(), expected.size()), 0);
}

TEST(HfConvert, KQuantFallsBackToF16ForShortRows) {
  HfFixture fx({.moe = true});
  fx.write();
  formats::ConvertSummary summary;
  const gguf::Reader r(convert(fx, "q4k.gguf", GgmlType::Q4_K, &summary));
  // Every matrix row here (64, 32, 96 values) is shorter than a 256-value K-quant block.
  EXPECT_EQ(r.tensor("blk.0.ffn_up_exps.weight").type, GgmlType::F16);
  EXPECT_EQ(r.tensor("token_embd.weight").type, GgmlType::F16);
  EXPECT_EQ(summary.fallbacks.size(), 2u + 7u * 2u);
  EXPECT_EQ(r.metadata().get_uint("general.file_type"), 14u);
}

TEST(HfConvert, TokenizerMetadataAndRoundTrip) {
  HfFixture fx({.moe = false, .tied = true});
  fx.write();
  const gguf::Reader r(convert(fx, "tok.gguf", GgmlType::F16));
  const auto& md = r.metadata();
  EXPECT_EQ(md.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(md.get_string("tokenizer.ggml.pre"), "qwen2");
  const auto tokens = md.require("tokenizer.ggml.tokens").to_strings();
  const auto types = md.require("tokenizer.ggml.token_type").to_ints();
  ASSERT_EQ(tokens.size(), size_t(F::kVocab));
  ASSERT_EQ(types.size(), size_t(F::kVocab));
  EXPECT_EQ(tokens[256], "he");
  EXPECT_EQ(types[256], 1);
  EXPECT_EQ(tokens[270], "<|endoftext|>");
  EXPECT_EQ(types[270], 3);  // CONTROL
  EXPECT_EQ(types[272], 3);
  EXPECT_EQ(tokens[273], "<think>");
  EXPECT_EQ(types[273], 4);  // USER_DEFINED: added but not special
  EXPECT_EQ(tokens[261], "[PAD261]");
  EXPECT_EQ(types[261], 5);  // UNUSED
  EXPECT_EQ(tokens[299], "[PAD299]");
  const auto merges = md.require("tokenizer.ggml.merges").to_strings();
  ASSERT_EQ(merges.size(), 5u);
  EXPECT_EQ(merges[0], "h e");
  EXPECT_EQ(merges[4], "\xC4\xA0 w");
  EXPECT_EQ(md.get_uint("tokenizer.ggml.eos_token_id"), 272u);        // tokenizer_config eos_token
  EXPECT_EQ(md.get_uint("tokenizer.ggml.bos_token_id"), 270u);        // generation_config (bos_token null)
  EXPECT_EQ(md.get_uint("tokenizer.ggml.padding_token_id"), 270u);
  EXPECT_FALSE(md.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_NE(md.get_string("tokenizer.chat_template").find("<|im_start|>"), std::string_view::npos);
  // The vocabulary works in our tokenizer: merges and specials apply.
  const auto tok = tokenizer::Tokenizer::from_gguf(md);
  const auto ids = tok.encode("hello world<|im_end|>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 259);  // "hello"
  EXPECT_EQ(ids[1], 260);       // "Ġw"
  EXPECT_EQ(ids.back(), 272);
}

TEST(HfConvertErrors, MissingKeysNameTheKey) {
  for (const char* key : {"num_experts", "hidden_size", "rms_norm_eps", "num_key_value_heads", "architectures"}) {
    HfFixture fx({.moe = true, .n_shards = 1});
    fx.config().erase(key);
    fx.write();
    const auto msg = convert_error(fx);
    EXPECT_NE(msg.find(std::string("'") + key + "'"), std::string::npos) << key << ": " << msg;
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
  HfFixture fx({.moe = true, .n_shards = 1});
  fx.config().erase("rope_parameters");
  fx.write();
  EXPECT_NE(convert_error(fx).find("rope_theta"), std::string::npos);
}

TEST(HfConvertErrors, UnsupportedArchitectureListsSupported) {
  HfFixture fx({.n_shards = 1});
  fx.config()["architectures"] = {"LlamaForCausalLM"};
  fx.write();
  const auto msg = convert_error(fx);
  EXPECT_NE(msg.find("LlamaForCausalLM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Qwen3ForCausalLM, Qwen3MoeForCausalLM"), std::string::npos) << msg;
}

TEST(HfConvertErrors, InconsistentConfigAndWeights) {
  {
    HfFixture fx({.n_shards = 1});
    fx.config()["moe_intermediate_size"] = 48;  // the weights have 32
    fx.write();
    EXPECT_NE(convert_error(fx).find("has shape [32, 64] but config.json implies [48, 64]"), std::string::npos)
        << convert_error(fx);
  }
  {
    HfFixture fx({.n_shards = 1});
    fx.config()["norm_topk_prob"] = false;
    fx.write();
    EXPECT_NE(convert_error(fx).find("'norm_topk_prob'"), std::string::npos);
  }
  {
    HfFixture fx({.n_shards = 1});
    fx.config()["num_hidden_layers"] = 1;  // layer 1's tensors are left over
    fx.write();
    EXPECT_NE(convert_error(fx).find("model.layers.1."), std::string::npos) << convert_error(fx);
  }
  {
    HfFixture fx({.n_shards = 1});
    fx.config()["num_hidden_layers"] = 3;
    fx.write();
    EXPECT_NE(convert_error(fx).find("no tensor 'model.layers.2."), std::string::npos) << convert_error(fx);
  }
  {
    HfFixture fx({.moe = false, .n_shards = 1, .tied = true});
    fx.config()["tie_word_embeddings"] = false;
    fx.write();
    EXPECT_NE(convert_error(fx).find("lm_head.weight"), std::string::npos) << convert_error(fx);
  }
  {
    HfFixture fx({.n_shards = 1});
    fx.config()["vocab_size"] = 200;  // tokenizer ids go to 273
    fx.write();
    EXPECT_NE(convert_error(fx).find("vocab_size is 200"), std::string::npos) << convert_error(fx);
  }
}

TEST(HfConvertErrors, MissingTokenizer) {
  HfFixture fx({.n_shards = 1});
  fx.write();
  std::filesystem::remove(fx.path("tokenizer.json"));
  EXPECT_NE(convert_error(fx).find("tokenizer.json"), std::string::npos);
}

TEST(HfConvertErrors, UnsupportedOutputType) {
  EXPECT_THROW(formats::file_type_for(GgmlType::Q2_K), Error);
  EXPECT_FALSE(formats::is_convert_type(GgmlType::IQ4_XS));
  EXPECT_TRUE(formats::is_convert_type(GgmlType::Q6_K));
}

}  // namespace
}  // namespace moe::test
