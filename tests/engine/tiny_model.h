#pragma once
// Tiny synth models of one architecture and weight type, written to a temporary directory (and
// loaded by the CPU engine): what the engine and GPU model tests run.
#include <algorithm>
#include <memory>
#include <span>
#include <vector>
#include <string>

#include "../gguf/gguf_test_util.h"
#include "gguf/reader.h"
#include "models/model.h"
#include "models/synth/synth.h"

namespace moe::test {

// A tiny synth model of `arch` with `type` weights written into dir; its path.
inline std::string write_tiny_model(const TempDir& dir, const std::string& arch, const std::string& type,
                                    uint64_t seed) {
  synth::SynthOptions o;
  o.arch = arch;
  o.preset = "tiny";
  o.type = type;
  o.seed = seed;
  o.threads = 2;
  o.output = dir.file(arch + "-" + type + ".gguf");
  synth::write_synth_model(o);
  return o.output;
}

struct TinyModel {
  TempDir dir;
  std::string path;
  std::unique_ptr<gguf::Reader> reader;
  std::unique_ptr<Model> model;

  TinyModel(const std::string& arch, const std::string& type, uint64_t seed = 7)
      : path(write_tiny_model(dir, arch, type, seed)),
        reader(std::make_unique<gguf::Reader>(path)),
        model(load_model(*reader)) {}
};

// A routing source (Model::set_routing_source) that sends every token of every layer to the
// same experts.
class FixedRouting final : public RoutingSource {
 public:
  explicit FixedRouting(std::vector<int32_t> experts) : experts_(std::move(experts)) {}
  void route(int, int n, std::span<int32_t> out) override {
    for (int t = 0; t < n; ++t) {
      std::copy(experts_.begin(), experts_.end(), out.begin() + ptrdiff_t(t) * ptrdiff_t(experts_.size()));
    }
  }

 private:
  std::vector<int32_t> experts_;
};

}  // namespace moe::test
