#include "formats/hf_convert.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/bytes.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/log.h"
#include "formats/hf_config.h"
#include "formats/hf_tensor_plan.h"
#include "formats/hf_tokenizer.h"
#include "formats/safetensors_checkpoint.h"
#include "gguf/writer.h"
#include "ops/cpu/quantize.h"

namespace moe::formats {
namespace {

struct TypeEntry {
  GgmlType type;
  uint32_t file_type;  // llama.cpp LLAMA_FTYPE_*; K-quants map to the "_S" mixes, the closest
};                     // llama.cpp name for "every matrix in this one type"
constexpr std::array kTypes = {
    TypeEntry{GgmlType::F32, 0},   TypeEntry{GgmlType::F16, 1},   TypeEntry{GgmlType::BF16, 32},
    TypeEntry{GgmlType::Q8_0, 7},  TypeEntry{GgmlType::Q4_0, 2},  TypeEntry{GgmlType::Q4_K, 14},
    TypeEntry{GgmlType::Q5_K, 16}, TypeEntry{GgmlType::Q6_K, 18},
};

// Writes one source row (any safetensors dtype) as `type`. Same-format copies keep the bits.
void convert_row(const SafeTensor& src, int64_t row, GgmlType type, ValueTransform transform, std::span<float> scratch,
                 std::span<std::byte> out) {
  const int64_t n = src.row_length();
  const size_t elem = dtype_size(src.dtype);
  const auto bytes = src.data.subspan(size_t(row * n) * elem, size_t(n) * elem);
  const bool same_format = (type == GgmlType::F32 && src.dtype == SafeDType::F32) ||
                           (type == GgmlType::F16 && src.dtype == SafeDType::F16) ||
                           (type == GgmlType::BF16 && src.dtype == SafeDType::BF16);
  if (same_format && transform == ValueTransform::None) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return;
  }
  to_f32(src.dtype, bytes, scratch);
  for (float& v : scratch.first(size_t(n))) {  // in f32, after the upcast, as llama.cpp does
    if (transform == ValueTransform::PlusOne) v = v + 1.0f;
    if (transform == ValueTransform::MinusExp) v = -std::exp(v);
  }
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out.data(), scratch.data(), out.size());
      break;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) store_unaligned(out.data() + 2 * i, f32_to_f16(scratch[i]).bits);
      break;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) store_unaligned(out.data() + 2 * i, f32_to_bf16(scratch[i]).bits);
      break;
    default:
      quantize_row(type, scratch, out);
  }
}

void fill_tensor(const PlannedTensor& t, GgmlType type, std::span<std::byte> out) {
  const int64_t row_len = t.ne[0];
  const uint64_t row_bytes = moe::row_bytes(type, uint64_t(row_len));
  std::vector<float> scratch(static_cast<size_t>(row_len));
  uint64_t at = 0;
  for (const auto& range : t.rows) {
    for (int64_t r = 0; r < range.n_rows; ++r) {
      if (at + row_bytes > out.size()) fail("convert: tensor {}: more source rows than its shape holds", t.name);
      convert_row(*range.source, range.first_row + r, type, t.transform, scratch, out.subspan(at, row_bytes));
      at += row_bytes;
    }
  }
  if (at != out.size()) fail("convert: tensor {}: source rows fill {} of {} bytes", t.name, at, out.size());
}

std::string model_name(const std::string& dir) {
  auto p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

bool is_convert_type(GgmlType type) {
  return std::any_of(kTypes.begin(), kTypes.end(), [&](const TypeEntry& e) { return e.type == type; });
}

std::string convert_type_names() {
  std::string s;
  for (const auto& e : kTypes) s += (s.empty() ? "" : ", ") + std::string(type_name(e.type));
  return s;
}

uint32_t file_type_for(GgmlType type) {
  for (const auto& e : kTypes) {
    if (e.type == type) return e.file_type;
  }
  fail("convert: type {} is not supported (supported: {})", type_name(type), convert_type_names());
}

ConvertSummary convert_hf_to_gguf(const ConvertOptions& opt) {
  const uint32_t file_type = file_type_for(opt.type);
  const HfModelConfig config = load_hf_config(opt.hf_dir);
  const HfVocab vocab = load_hf_vocab(opt.hf_dir, config);
  const SamplingDefaults sampling = load_sampling_defaults(opt.hf_dir);
  const SafetensorsCheckpoint checkpoint(opt.hf_dir);
  const std::vector<PlannedTensor> plan = plan_tensors(config, checkpoint);

  gguf::Writer w;
  write_hparams(config, w);
  w.set_string("general.name", model_name(opt.hf_dir));
  w.set_u32("general.file_type", file_type);
  w.set_u32("general.quantization_version", 2);
  write_sampling_defaults(sampling, w);
  write_vocab(vocab, w);

  ConvertSummary summary;
  summary.gguf_arch = config.gguf_arch;
  for (const auto& t : plan) {
    GgmlType type = t.keep_f32 || t.ne.size() < 2 ? GgmlType::F32 : opt.type;
    if (t.ne[0] % block_size(type) != 0) {
      // As llama.cpp's converter does: a row that does not divide into blocks cannot be
      // quantized, so the tensor is written as F16.
      spdlog::warn("convert: {}: row length {} is not a multiple of the {} block size {}; writing F16", t.name,
                   t.ne[0], type_name(type), block_size(type));
      summary.fallbacks.push_back(t.name);
      type = GgmlType::F16;
    }
    uint64_t elements = 1;
    for (int64_t d : t.ne) elements *= uint64_t(d);
    summary.tensor_bytes += elements / block_size(type) * type_size(type);
    // The plan (and the checkpoint it points into) outlives w.write(), which calls the fills.
    w.add_tensor(t.name, type, t.ne, [&t, type](std::span<std::byte> out) { fill_tensor(t, type, out); });
  }
  summary.n_tensors = plan.size();
  w.write(opt.out_path);
  return summary;
}

}  // namespace moe::formats
