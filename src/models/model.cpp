#include "models/model.h"

#include <array>

#include "core/error.h"
#include "models/architectures.h"

namespace moe {
namespace {

struct Architecture {
  std::string_view name;
  std::unique_ptr<Model> (*make)(const gguf::Reader&, const ModelOptions&);
};

// The one table of supported architectures.
constexpr std::array kArchitectures = {
    Architecture{"qwen3", make_qwen3},
    Architecture{"qwen3moe", make_qwen3moe},
    Architecture{"qwen3next", make_qwen3next},
};

}  // namespace

std::vector<int32_t> Model::forced_routing(int layer, int n, int k) const {
  if (!routing_) return {};
  std::vector<int32_t> experts(size_t(n) * size_t(k), -1);
  routing_->route(layer, n, experts);
  for (size_t t = 0; t < size_t(n); ++t) {
    for (size_t r = 0; r < size_t(k); ++r) {
      const int32_t e = experts[t * size_t(k) + r];
      if (e < 0 || e >= config_.n_expert) fail("routing source: expert {} at layer {} (the model has {})", e, layer,
                                               config_.n_expert);
      for (size_t q = 0; q < r; ++q) {
        if (experts[t * size_t(k) + q] == e) fail("routing source: expert {} twice in a token at layer {}", e, layer);
      }
    }
  }
  return experts;
}

void Model::trace(int layer, const char* what, std::span<const float> values) const {
  if (!tracer_) return;
  tracer_(layer < 0 ? std::string(what) : "blk." + std::to_string(layer) + "." + what, values);
}

std::string supported_architectures() {
  std::string names;
  for (const auto& a : kArchitectures) names += (names.empty() ? "" : ", ") + std::string(a.name);
  return names;
}

std::unique_ptr<Model> load_model(const gguf::Reader& reader, const ModelOptions& options) {
  const std::string_view arch = reader.architecture();
  for (const auto& a : kArchitectures) {
    if (a.name == arch) return a.make(reader, options);
  }
  // Qwen3.5 looks like Qwen3-Next but orders its value heads differently (reference section
  // 7.3): running it as qwen3next would give plausible but wrong output.
  if (arch == "qwen35" || arch == "qwen35moe") {
    fail("{}: architecture '{}' is not supported yet (supported: {})", reader.path(), arch, supported_architectures());
  }
  fail("{}: unsupported architecture '{}' (supported: {})", reader.path(), arch, supported_architectures());
}

}  // namespace moe
