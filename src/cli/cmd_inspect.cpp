// moeserve inspect: what a GGUF model is, before anything is loaded onto a device.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"
#include "gguf/reader.h"

namespace moe::cli {
namespace {

struct InspectOptions {
  std::string model;
  bool json = false;
  bool no_tensors = false;
};

bool is_tokenizer_key(std::string_view key) { return key.starts_with("tokenizer."); }

nlohmann::json to_json(const gguf::Value& v) {
  using gguf::ValueType;
  if (!v.is_array()) {
    switch (v.type()) {
      case ValueType::String: return std::string(v.to_string());
      case ValueType::Bool: return v.to_bool();
      // An f32 printed through double shows float noise (1e-6 as 9.99999997e-07): round-trip it
      // through its shortest float spelling instead.
      case ValueType::F32: return std::stod(fmt::format("{}", float(v.to_double())));
      case ValueType::F64: return v.to_double();
      default: return v.to_double() < 0 ? nlohmann::json(v.to_int()) : nlohmann::json(v.to_uint());
    }
  }
  // Long arrays (vocabularies, merges) are summarised: inspect is for people, not a dump.
  constexpr uint64_t kMaxItems = 64;
  if (v.size() > kMaxItems) {
    return {{"array_of", std::string(gguf::value_type_name(v.element_type()))}, {"length", v.size()}};
  }
  nlohmann::json items = nlohmann::json::array();
  if (v.element_type() == ValueType::String) {
    for (auto s : v.to_strings()) items.push_back(std::string(s));
  } else if (gguf::is_integer(v.element_type())) {
    for (auto x : v.to_ints()) items.push_back(x);
  } else {
    for (auto x : v.to_doubles()) items.push_back(x);
  }
  return items;
}

struct TypeTotal {
  uint64_t tensors = 0;
  uint64_t bytes = 0;
};

std::map<std::string_view, TypeTotal> totals_by_type(const gguf::Reader& r) {
  std::map<std::string_view, TypeTotal> totals;
  for (const auto& t : r.tensors()) {
    auto& total = totals[type_name(t.type)];
    ++total.tensors;
    total.bytes += t.nbytes;
  }
  return totals;
}

void print_json(const gguf::Reader& r, const InspectOptions& opt) {
  nlohmann::json out;
  out["path"] = r.path();
  out["files"] = r.n_files();
  out["gguf_version"] = r.file(0).version();
  uint64_t file_bytes = 0;
  for (size_t i = 0; i < r.n_files(); ++i) file_bytes += r.file(i).size();
  out["file_bytes"] = file_bytes;
  out["tensor_bytes"] = r.tensor_bytes();
  if (const auto* arch = r.metadata().find("general.architecture")) out["architecture"] = std::string(arch->to_string());
  nlohmann::json metadata = nlohmann::json::object();
  for (const auto& [key, value] : r.metadata().entries()) metadata[std::string(key)] = to_json(value);
  out["metadata"] = metadata;
  nlohmann::json types = nlohmann::json::object();
  for (const auto& [name, total] : totals_by_type(r)) {
    types[std::string(name)] = {{"tensors", total.tensors}, {"bytes", total.bytes}};
  }
  out["tensor_types"] = types;
  out["tensor_count"] = r.tensors().size();
  if (!opt.no_tensors) {
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& t : r.tensors()) {
      std::vector<int64_t> shape(t.ne.begin(), t.ne.begin() + t.n_dims);
      tensors.push_back({{"name", std::string(t.name)},
                         {"type", std::string(type_name(t.type))},
                         {"shape", shape},
                         {"bytes", t.nbytes},
                         {"file", t.file_index},
                         {"offset", t.offset}});
    }
    out["tensors"] = tensors;
  }
  std::printf("%s\n", out.dump(2).c_str());
}

void print_text(const gguf::Reader& r, const InspectOptions& opt) {
  const auto& meta = r.metadata();
  uint64_t file_bytes = 0;
  for (size_t i = 0; i < r.n_files(); ++i) file_bytes += r.file(i).size();
  std::printf("file          %s (%zu file%s, GGUF v%u, %s)\n", r.path().c_str(), r.n_files(),
              r.n_files() == 1 ? "" : "s", r.file(0).version(), format_bytes(file_bytes).c_str());
  const std::string arch(meta.get_string("general.architecture", "(none: no general.architecture key)"));
  std::printf("architecture  %s\n", arch.c_str());
  if (const auto* name = meta.find("general.name")) std::printf("name          %s\n", std::string(name->to_string()).c_str());

  auto print_section = [&](const char* title, auto&& wanted) {
    bool any = false;
    for (const auto& [key, value] : meta.entries()) {
      if (!wanted(key)) continue;
      if (!any) std::printf("\n%s\n", title);
      any = true;
      std::printf("  %-44s %s\n", std::string(key).c_str(), value.to_display(4).c_str());
    }
  };
  const std::string prefix = arch + ".";
  print_section("hyperparameters", [&](std::string_view k) { return k.starts_with(prefix); });
  print_section("tokenizer", [&](std::string_view k) { return is_tokenizer_key(k); });
  print_section("other metadata",
                [&](std::string_view k) { return !k.starts_with(prefix) && !is_tokenizer_key(k); });

  std::printf("\ntensors       %zu, %s\n", r.tensors().size(), format_bytes(r.tensor_bytes()).c_str());
  for (const auto& [name, total] : totals_by_type(r)) {
    std::printf("  %-8s %6llu tensors  %12s\n", std::string(name).c_str(), (unsigned long long)total.tensors,
                format_bytes(total.bytes).c_str());
  }
  if (opt.no_tensors || r.tensors().empty()) return;
  std::printf("\n  %-40s %-8s %-26s %12s%s\n", "name", "type", "shape", "size", r.n_files() > 1 ? "  file" : "");
  for (const auto& t : r.tensors()) {
    std::printf("  %-40s %-8s %-26s %12s", std::string(t.name).c_str(), std::string(type_name(t.type)).c_str(),
                t.shape_string().c_str(), format_bytes(t.nbytes).c_str());
    if (r.n_files() > 1) std::printf("  %u", t.file_index + 1);
    std::printf("\n");
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "Show a model's architecture, hyperparameters, tokenizer and tensors");
  cmd->add_option("-m,--model", opt->model, "GGUF file (for a split model, the first shard)")->required();
  cmd->add_flag("--json", opt->json, "Print JSON instead of text");
  cmd->add_flag("--no-tensors", opt->no_tensors, "Leave out the per-tensor table");
  cmd->callback([opt] {
    const gguf::Reader reader(opt->model);
    if (opt->json) print_json(reader, *opt);
    else print_text(reader, *opt);
  });
}

}  // namespace moe::cli
