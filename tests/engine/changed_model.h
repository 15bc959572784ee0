#pragma once
// A copy of a model file with one f32 weight changed: a planted difference that a comparison
// of engines must find at the op that reads it (tests of engine/op_compare.h).
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gguf/reader.h"

namespace moe::test {

// Writes `out`: the file at `path` with the first value of f32 tensor `name` scaled by 1.5
// (plus 0.25, so a zero changes too).
inline void write_changed_copy(const std::string& path, const std::string& name, const std::string& out) {
  std::vector<char> bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const gguf::Reader reader(path);
  const gguf::TensorInfo& t = reader.tensor(name);
  if (t.type != GgmlType::F32) throw std::runtime_error(name + " is not f32");
  const size_t at = size_t(reader.file(0).data_offset() + t.offset);
  float v;
  std::memcpy(&v, bytes.data() + at, 4);
  v = v * 1.5f + 0.25f;
  std::memcpy(bytes.data() + at, &v, 4);
  std::ofstream(out, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace moe::test
