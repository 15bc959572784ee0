#pragma once
// Helpers shared by the synth tests: a scratch directory, writing a synthetic model, and
// reading tensors back as f32.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "gguf/reader.h"
#include "models/synth/synth.h"
#include "ops/cpu/quantize.h"

namespace moe::test {

// A directory removed with everything in it when the test ends.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag)
      : path_(std::filesystem::temp_directory_path() / ("moe_synth_" + tag + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Names of the files in the directory.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) names.push_back(e.path().filename().string());
    return names;
  }

 private:
  std::filesystem::path path_;
};

inline synth::SynthReport write_model(const std::string& path, const std::string& arch, const std::string& preset,
                                      const std::string& type = "q8_0", uint64_t seed = 0, int threads = 2,
                                      std::optional<int64_t> layers = std::nullopt) {
  synth::SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.type = type;
  o.seed = seed;
  o.threads = threads;
  o.layers = layers;
  o.output = path;
  return synth::write_synth_model(o);
}

inline synth::SynthOptions options(const std::string& arch, const std::string& preset,
                                   std::optional<int64_t> layers = std::nullopt) {
  synth::SynthOptions o;
  o.arch = arch;
  o.preset = preset;
  o.layers = layers;
  return o;
}

inline synth::ModelShape shape_of(const std::string& arch, const std::string& preset,
                                  std::optional<int64_t> layers = std::nullopt) {
  return synth::resolve_shape(options(arch, preset, layers));
}

inline std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every element of a tensor, dequantized, row after row.
inline std::vector<float> read_f32(const gguf::TensorInfo& t) {
  std::vector<float> out(size_t(t.n_elements()));
  const uint64_t rb = t.row_bytes();
  const size_t row_len = size_t(t.ne[0]);
  for (int64_t r = 0; r < t.n_rows(); ++r) {
    dequantize_row(t.type, t.data.subspan(uint64_t(r) * rb, rb), std::span(out).subspan(size_t(r) * row_len, row_len));
  }
  return out;
}

}  // namespace moe::test
