#include "formats/hf_tokenizer.h"

#include <limits>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"
#include "formats/json_util.h"

namespace moe::formats {
namespace {

using json_util::Json;

// Every token id a tokenizer assigns, checked against the model's embedding rows.
class TokenTable {
 public:
  TokenTable(uint32_t vocab_size, std::string source) : texts_(vocab_size), types_(vocab_size, 0), source_(std::move(source)) {}

  void set(uint64_t id, const std::string& text, TokenType type, std::string_view where) {
    if (id >= texts_.size()) {
      fail("{}: {}: token '{}' has id {} but config.json vocab_size is {}", source_, where, text, id, texts_.size());
    }
    if (types_[id] != 0 && texts_[id] != text) {
      fail("{}: {}: id {} is both '{}' and '{}'", source_, where, id, texts_[id], text);
    }
    texts_[id] = text;
    types_[id] = int32_t(type);
    by_text_.try_emplace(text, uint32_t(id));
  }
  std::optional<uint32_t> find(const std::string& text) const {
    const auto it = by_text_.find(text);
    return it == by_text_.end() ? std::nullopt : std::optional(it->second);
  }
  // Ids nobody defined become "[PAD<id>]", UNUSED, as llama.cpp pads to the embedding size.
  void finish(HfVocab& out) {
    for (size_t i = 0; i < texts_.size(); ++i) {
      if (types_[i] == 0) {
        texts_[i] = "[PAD" + std::to_string(i) + "]";
        types_[i] = int32_t(TokenType::Unused);
      }
    }
    out.tokens = std::move(texts_);
    out.token_types = std::move(types_);
  }

 private:
  std::vector<std::string> texts_;
  std::vector<int32_t> types_;  // 0: not defined yet
  std::unordered_map<std::string, uint32_t> by_text_;
  std::string source_;
};

std::string merge_from_pair(const Json& pair, const std::string& where) {
  if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) {
    fail("{}: merge {} must be two strings", where, pair.dump());
  }
  // A space inside a part would make "left right" ambiguous; gguf-py maps it to U+0120 ("Ġ"),
  // the byte-level alphabet's space.
  auto encode = [](const std::string& part) {
    std::string s;
    for (char c : part) s += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
    return s;
  };
  return encode(pair[0].get<std::string>()) + " " + encode(pair[1].get<std::string>());
}

std::vector<std::string> read_merges(const Json& merges, const std::string& where) {
  if (!merges.is_array()) fail("{}: 'model.merges' must be a list", where);
  std::vector<std::string> out;
  out.reserve(merges.size());
  for (const auto& m : merges) {
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      const auto space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size() || s.find(' ', space + 1) != std::string::npos) {
        fail("{}: merge '{}' is not of the form 'left right'", where, s);
      }
      out.push_back(s);
    } else {
      out.push_back(merge_from_pair(m, where));
    }
  }
  return out;
}

// tokenizer_config.json names special tokens as a string or as {"content": ...}; null is "none".
std::optional<std::string> token_name(const Json& cfg, std::string_view key, const std::string& where) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return json_util::get_string(*it, "content", where + ": " + std::string(key));
  fail("{}: key '{}' must be a token string or {{\"content\": ...}}, found {}", where, key, it->dump());
}

std::optional<uint32_t> id_from(const Json& j, std::string_view key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  const Json& v = it->is_array() && !it->empty() ? it->front() : *it;
  if (!v.is_number_unsigned() || v.get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
    fail("{}: key '{}' must be a token id, found {}", where, key, it->dump());
  }
  return uint32_t(v.get<uint64_t>());
}

std::optional<std::string> read_text_file(const std::string& path) {
  if (!json_util::file_exists(path)) return std::nullopt;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open", path);
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

std::optional<std::string> chat_template_from(const Json& cfg, const std::string& where) {
  const auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  // The list form holds named templates; the GGUF key carries the "default" one.
  if (it->is_array()) {
    for (const auto& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default") return json_util::get_string(entry, "template", where);
    }
    fail("{}: 'chat_template' is a list without a 'default' entry", where);
  }
  fail("{}: 'chat_template' must be a string or a list of named templates", where);
}

}  // namespace

bool looks_special(std::string_view t) {
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (t.size() >= 4 && t.starts_with("<|") && t.ends_with("|>")) return true;
  if (t.starts_with("<\xEF\xBD\x9C") && t.ends_with("\xEF\xBD\x9C>")) return true;  // <｜...｜> (deepseek)
  return t.starts_with("<unused") && t.ends_with(">");
}

HfVocab load_hf_vocab(const std::string& dir, const HfModelConfig& config) {
  const std::string path = dir + "/tokenizer.json";
  const Json tok = json_util::read_file(path);
  const Json& model = json_util::require(tok, "model", path);
  if (!model.is_object()) fail("{}: 'model' must be an object", path);
  if (const auto type = json_util::get_string_opt(model, "type", path + ": model"); type && *type != "BPE") {
    fail("{}: tokenizer model type '{}' is not supported (only byte-level BPE)", path, *type);
  }
  HfVocab out;
  TokenTable table(config.vocab_size, path);
  const Json& vocab = json_util::require(model, "vocab", path + ": model");
  if (!vocab.is_object() || vocab.empty()) fail("{}: 'model.vocab' must be a non-empty object", path);
  for (const auto& [text, id] : vocab.items()) {
    if (!id.is_number_unsigned()) fail("{}: model.vocab['{}'] must be a token id, found {}", path, text, id.dump());
    table.set(id.get<uint64_t>(), text, TokenType::Normal, "model.vocab");
  }
  out.merges = read_merges(json_util::require(model, "merges", path + ": model"), path);

  if (const auto it = tok.find("added_tokens"); it != tok.end() && !it->is_null()) {
    if (!it->is_array()) fail("{}: 'added_tokens' must be a list", path);
    for (const auto& added : *it) {
      const std::string where = path + ": added_tokens";
      if (!added.is_object()) fail("{}: entry {} must be an object", where, added.dump());
      const auto content = json_util::get_string(added, "content", where);
      const bool special = json_util::get_bool_opt(added, "special", where).value_or(false);
      const auto type = special || looks_special(content) ? TokenType::Control : TokenType::UserDefined;
      table.set(json_util::get_uint(added, "id", where), content, type, "added_tokens");
    }
  }

  // Special ids: tokenizer_config.json names first, then generation_config.json, then config.json.
  const std::string cfg_path = dir + "/tokenizer_config.json";
  const Json cfg = json_util::file_exists(cfg_path) ? json_util::read_file(cfg_path) : Json::object();
  auto resolve = [&](std::string_view key) -> std::optional<uint32_t> {
    const auto name = token_name(cfg, key, cfg_path);
    if (!name) return std::nullopt;
    const auto id = table.find(*name);
    if (!id) fail("{}: '{}' is '{}', which is not a token of tokenizer.json", cfg_path, key, *name);
    return id;
  };
  out.bos_id = resolve("bos_token");
  out.eos_id = resolve("eos_token");
  out.pad_id = resolve("pad_token");
  out.unk_id = resolve("unk_token");
  out.add_bos_token = json_util::get_bool_opt(cfg, "add_bos_token", cfg_path).value_or(false);
  out.chat_template = chat_template_from(cfg, cfg_path);
  if (!out.chat_template) out.chat_template = read_text_file(dir + "/chat_template.jinja");

  const std::string gen_path = dir + "/generation_config.json";
  if (json_util::file_exists(gen_path)) {
    const Json gen = json_util::read_file(gen_path);
    if (!out.bos_id) out.bos_id = id_from(gen, "bos_token_id", gen_path);
    if (!out.eos_id) out.eos_id = id_from(gen, "eos_token_id", gen_path);
    if (!out.pad_id) out.pad_id = id_from(gen, "pad_token_id", gen_path);
  }
  if (!out.bos_id) out.bos_id = config.bos_token_id;
  if (!out.eos_id) out.eos_id = config.eos_token_id;
  if (!out.pad_id) out.pad_id = config.pad_token_id;
  for (const auto& [name, id] : {std::pair{"bos", out.bos_id}, {"eos", out.eos_id}, {"pad", out.pad_id}}) {
    if (id && *id >= config.vocab_size) fail("{}: {} token id {} is outside the vocabulary ({})", dir, name, *id, config.vocab_size);
  }
  if (!out.eos_id) fail("{}: no eos token: none of tokenizer_config.json 'eos_token', generation_config.json or config.json 'eos_token_id'", dir);
  table.finish(out);
  return out;
}

SamplingDefaults load_sampling_defaults(const std::string& dir) {
  SamplingDefaults s;
  const std::string path = dir + "/generation_config.json";
  if (!json_util::file_exists(path)) return s;
  const Json gen = json_util::read_file(path);
  if (const auto k = json_util::get_uint_opt(gen, "top_k", path)) {
    if (*k > uint64_t(std::numeric_limits<int32_t>::max())) fail("{}: top_k = {} is out of range", path, *k);
    s.top_k = int32_t(*k);
  }
  if (const auto p = json_util::get_number_opt(gen, "top_p", path)) s.top_p = float(*p);
  if (const auto t = json_util::get_number_opt(gen, "temperature", path)) s.temperature = float(*t);
  return s;
}

void write_vocab(const HfVocab& v, gguf::Writer& w) {
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "qwen2");
  w.set_array_string("tokenizer.ggml.tokens", v.tokens);
  w.set_array_i32("tokenizer.ggml.token_type", v.token_types);
  w.set_array_string("tokenizer.ggml.merges", v.merges);
  if (v.eos_id) w.set_u32("tokenizer.ggml.eos_token_id", *v.eos_id);
  if (v.pad_id) w.set_u32("tokenizer.ggml.padding_token_id", *v.pad_id);
  if (v.bos_id) w.set_u32("tokenizer.ggml.bos_token_id", *v.bos_id);
  if (v.unk_id) w.set_u32("tokenizer.ggml.unknown_token_id", *v.unk_id);
  w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos_token);
  if (v.chat_template) w.set_string("tokenizer.chat_template", *v.chat_template);
}

void write_sampling_defaults(const SamplingDefaults& s, gguf::Writer& w) {
  if (s.top_k) w.set_i32("general.sampling.top_k", *s.top_k);
  if (s.top_p) w.set_f32("general.sampling.top_p", *s.top_p);
  if (s.temperature) w.set_f32("general.sampling.temp", *s.temperature);
}

}  // namespace moe::formats
