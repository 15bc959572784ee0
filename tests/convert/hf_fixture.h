#pragma once
// Builds tiny Hugging Face checkpoints on disk for the converter tests: safetensors files
// (sharded with an index, or single), config.json, tokenizer.json, tokenizer_config.json and
// generation_config.json, with deterministic parameter values the tests can recompute.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "gguf/gguf_test_util.h"

namespace moe::test {

using Json = nlohmann::json;

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// One tensor of a safetensors file: raw little-endian element bytes.
struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

// The file image: 8-byte length, JSON header padded with spaces to 8 bytes (as the reference
// writer does), data in the given order.
inline std::vector<std::byte> safetensors_image(const std::vector<RawTensor>& tensors, const Json& metadata = Json()) {
  Json header = Json::object();
  uint64_t at = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.bytes.size()}}};
    at += t.bytes.size();
  }
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  while (text.size() % 8) text += ' ';
  std::vector<std::byte> out(8);
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  for (char c : text) out.push_back(std::byte(c));
  for (const auto& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

// A header given as text (for malformed-file tests) followed by `data_bytes` zero bytes.
inline std::vector<std::byte> safetensors_image_raw(const std::string& header, size_t data_bytes) {
  std::vector<std::byte> out(8);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  for (char c : header) out.push_back(std::byte(c));
  out.resize(out.size() + data_bytes);
  return out;
}

// Deterministic values in [-1, 1) from a name and an index, exactly representable in f16/bf16.
inline float fixture_value(const std::string& name, size_t i, const std::string& dtype) {
  uint64_t h = 1469598103934665603ull;
  for (char c : name) h = (h ^ uint8_t(c)) * 1099511628211ull;
  h = (h ^ i) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  const float v = float(int64_t(h % 20001) - 10000) / 10000.0f;
  if (dtype == "F16") return f16_to_f32(f32_to_f16(v));
  if (dtype == "BF16") return bf16_to_f32(f32_to_bf16(v));
  return v;
}

inline std::vector<std::byte> encode(const std::vector<float>& values, const std::string& dtype) {
  std::vector<std::byte> out;
  for (float v : values) {
    if (dtype == "F32") {
      const auto* p = reinterpret_cast<const std::byte*>(&v);
      out.insert(out.end(), p, p + 4);
    } else {
      const uint16_t bits = dtype == "F16" ? f32_to_f16(v).bits : f32_to_bf16(v).bits;
      out.push_back(std::byte(bits & 0xFF));
      out.push_back(std::byte(bits >> 8));
    }
  }
  return out;
}

struct FixtureOptions {
  bool moe = true;
  bool fused_experts = false;  // transformers 5 layout: mlp.experts.gate_up_proj / down_proj
  int n_shards = 2;            // 1: a single model.safetensors without an index
  std::string dtype = "F16";
  bool tied = false;
};

// A logical HF parameter: shape and values (row-major, last dim contiguous).
struct Param {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

class HfFixture {
 public:
  static constexpr int64_t kEmbd = 64, kHeads = 4, kKvHeads = 2, kHeadDim = 16, kLayers = 2, kExperts = 4,
                           kExpertsUsed = 2, kFfExp = 32, kFf = 96, kVocab = 300;

  explicit HfFixture(FixtureOptions opt = {}) : opt_(opt) { build(); }

  std::string dir() const {
    std::string d = dir_.file("");
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    return d;
  }
  std::string path(const std::string& name) const { return dir_.file(name); }
  Json& config() { return config_; }
  const std::map<std::string, Param>& params() const { return params_; }
  // The per-expert view, whatever the storage layout: expert e of layer l, "gate_proj" etc.
  const Param& expert(int l, int e, const std::string& kind) const {
    return params_.at("model.layers." + std::to_string(l) + ".mlp.experts." + std::to_string(e) + "." + kind + ".weight");
  }
  const std::string& dtype() const { return opt_.dtype; }

  // Writes every file; call again after editing config() to rewrite.
  void write() const {
    write_text(path("config.json"), config_.dump(2));
    write_tokenizer();
    std::vector<std::vector<RawTensor>> shards(size_t(opt_.n_shards));
    Json weight_map = Json::object();
    size_t i = 0;
    for (const auto& [name, p] : stored()) {
      const size_t s = i++ % shards.size();
      shards[s].push_back({name, opt_.dtype, p.shape, encode(p.values, opt_.dtype)});
      weight_map[name] = shard_name(s);
    }
    for (size_t s = 0; s < shards.size(); ++s) write_bytes(path(shard_name(s)), safetensors_image(shards[s], {{"format", "pt"}}));
    if (opt_.n_shards > 1) write_text(path("model.safetensors.index.json"), Json{{"metadata", Json::object()}, {"weight_map", weight_map}}.dump(2));
  }

  // Tokens the fixture tokenizer defines beyond the 256 byte tokens.
  static std::vector<std::pair<std::string, std::string>> merges() {
    return {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "w"}};
  }
  static constexpr int kFirstAdded = 270;  // <|endoftext|> 270, <|im_start|> 271, <|im_end|> 272, <think> 273

 private:
  std::string shard_name(size_t s) const {
    if (opt_.n_shards == 1) return "model.safetensors";
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05d.safetensors", s + 1, opt_.n_shards);
    return buf;
  }

  void add(const std::string& name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (auto d : shape) n *= size_t(d);
    Param p{std::move(shape), std::vector<float>(n)};
    for (size_t i = 0; i < n; ++i) p.values[i] = fixture_value(name, i, opt_.dtype);
    params_[name] = std::move(p);
  }

  void build() {
    config_ = {{"architectures", {opt_.moe ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM"}},
               {"model_type", opt_.moe ? "qwen3_moe" : "qwen3"},
               {"hidden_size", kEmbd}, {"num_hidden_layers", kLayers}, {"num_attention_heads", kHeads},
               {"num_key_value_heads", kKvHeads}, {"head_dim", kHeadDim}, {"intermediate_size", kFf},
               {"max_position_embeddings", 4096}, {"vocab_size", kVocab}, {"rms_norm_eps", 1e-6},
               {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1000000.0}}},
               {"tie_word_embeddings", opt_.tied}, {"hidden_act", "silu"}, {"attention_bias", false},
               {"bos_token_id", 270}, {"eos_token_id", 272}};
    if (opt_.moe) {
      config_["num_experts"] = kExperts;
      config_["num_experts_per_tok"] = kExpertsUsed;
      config_["moe_intermediate_size"] = kFfExp;
      config_["norm_topk_prob"] = true;
      config_["decoder_sparse_step"] = 1;
      config_["mlp_only_layers"] = Json::array();
    }
    add("model.embed_tokens.weight", {kVocab, kEmbd});
    for (int l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      add(p + "input_layernorm.weight", {kEmbd});
      add(p + "post_attention_layernorm.weight", {kEmbd});
      add(p + "self_attn.q_proj.weight", {kHeads * kHeadDim, kEmbd});
      add(p + "self_attn.k_proj.weight", {kKvHeads * kHeadDim, kEmbd});
      add(p + "self_attn.v_proj.weight", {kKvHeads * kHeadDim, kEmbd});
      add(p + "self_attn.o_proj.weight", {kEmbd, kHeads * kHeadDim});
      add(p + "self_attn.q_norm.weight", {kHeadDim});
      add(p + "self_attn.k_norm.weight", {kHeadDim});
      if (opt_.moe) {
        add(p + "mlp.gate.weight", {kExperts, kEmbd});
        for (int e = 0; e < kExperts; ++e) {
          const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
          add(x + "gate_proj.weight", {kFfExp, kEmbd});
          add(x + "up_proj.weight", {kFfExp, kEmbd});
          add(x + "down_proj.weight", {kEmbd, kFfExp});
        }
      } else {
        add(p + "mlp.gate_proj.weight", {kFf, kEmbd});
        add(p + "mlp.up_proj.weight", {kFf, kEmbd});
        add(p + "mlp.down_proj.weight", {kEmbd, kFf});
      }
    }
    add("model.norm.weight", {kEmbd});
    if (!opt_.tied) add("lm_head.weight", {kVocab, kEmbd});
  }

  // The tensors as stored on disk: per-expert, or fused the way transformers 5 fuses them
  // (gate_up = per expert [gate rows; up rows], down stacked).
  std::map<std::string, Param> stored() const {
    if (!opt_.fused_experts) return params_;
    std::map<std::string, Param> out;
    for (const auto& [name, p] : params_) {
      if (name.find(".mlp.experts.") == std::string::npos) out[name] = p;
    }
    for (int l = 0; l < kLayers; ++l) {
      Param gate_up{{kExperts, 2 * kFfExp, kEmbd}, {}}, down{{kExperts, kEmbd, kFfExp}, {}};
      for (int e = 0; e < kExperts; ++e) {
        for (const char* k : {"gate_proj", "up_proj"}) {
          const auto& v = expert(l, e, k).values;
          gate_up.values.insert(gate_up.values.end(), v.begin(), v.end());
        }
        const auto& v = expert(l, e, "down_proj").values;
        down.values.insert(down.values.end(), v.begin(), v.end());
      }
      out["model.layers." + std::to_string(l) + ".mlp.experts.gate_up_proj"] = std::move(gate_up);
      out["model.layers." + std::to_string(l) + ".mlp.experts.down_proj"] = std::move(down);
    }
    return out;
  }

  void write_tokenizer() const {
    Json vocab = Json::object();
    // The GPT-2 byte alphabet: printable bytes map to themselves, the rest to U+0100 + k.
    int k = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const uint32_t cp = printable ? uint32_t(b) : 256 + uint32_t(k++);
      std::string s;
      if (cp < 0x80) s = std::string(1, char(cp));
      else s = {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
      vocab[s] = b;
    }
    int id = 256;
    Json merges = Json::array();
    for (const auto& [a, b] : HfFixture::merges()) {
      vocab[a + b] = id++;
      merges.push_back(Json::array({a, b}));  // the pair form newer tokenizers write
    }
    Json added = Json::array();
    const std::vector<std::pair<std::string, bool>> specials = {
        {"<|endoftext|>", true}, {"<|im_start|>", true}, {"<|im_end|>", true}, {"<think>", false}};
    for (size_t i = 0; i < specials.size(); ++i) {
      added.push_back({{"id", kFirstAdded + int(i)}, {"content", specials[i].first}, {"special", specials[i].second},
                       {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}});
    }
    write_text(path("tokenizer.json"),
               Json{{"version", "1.0"}, {"added_tokens", added}, {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}}.dump());
    write_text(path("tokenizer_config.json"),
               Json{{"bos_token", nullptr}, {"eos_token", "<|im_end|>"}, {"pad_token", "<|endoftext|>"},
                    {"add_bos_token", false}, {"chat_template", "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"}}.dump());
    write_text(path("generation_config.json"),
               Json{{"bos_token_id", 270}, {"eos_token_id", {272, 270}}, {"temperature", 0.6}, {"top_k", 20}, {"top_p", 0.95}}.dump());
  }

  FixtureOptions opt_;
  TempDir dir_;
  Json config_;
  std::map<std::string, Param> params_;
};

}  // namespace moe::test
