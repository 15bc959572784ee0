#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "gguf/reader.h"
#include "gguf_test_util.h"

namespace moe::gguf {
namespace {

TEST(GgufRoundTrip, MetadataAndTensorsSurviveWriteAndRead) {
  test::TempDir dir;
  const std::string path = dir.file("sample.gguf");
  auto w = test::sample_writer();
  w.set_i8("test.i8", -5);
  w.set_u16("test.u16", 65000);
  w.set_i16("test.i16", -32000);
  w.set_i64("test.i64", -(int64_t(1) << 40));
  w.set_f64("test.f64", 3.25);
  w.set_u8("test.u8", 200);
  const std::vector<float> floats = {1.5f, -2.0f};
  w.set_array_f32("test.floats", floats);
  w.write(path);

  Reader r(path);
  EXPECT_EQ(r.n_files(), 1u);
  EXPECT_EQ(r.file(0).version(), 3u);
  EXPECT_EQ(r.architecture(), "qwen3moe");
  const Metadata& m = r.metadata();
  EXPECT_EQ(m.get_string("general.name"), "sample");
  EXPECT_EQ(m.get_uint("qwen3moe.block_count"), 2u);
  EXPECT_EQ(m.get_uint("qwen3moe.context_length"), 4096u);
  EXPECT_FLOAT_EQ(float(m.get_double("qwen3moe.attention.layer_norm_rms_epsilon")), 1e-6f);
  EXPECT_FALSE(m.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(m.get_int("test.i8"), -5);
  EXPECT_EQ(m.get_uint("test.u16"), 65000u);
  EXPECT_EQ(m.get_int("test.i16"), -32000);
  EXPECT_EQ(m.get_int("test.i64"), -(int64_t(1) << 40));
  EXPECT_EQ(m.get_double("test.f64"), 3.25);
  EXPECT_EQ(m.get_uint("test.u8"), 200u);
  EXPECT_EQ(m.require("test.floats").to_doubles(), (std::vector<double>{1.5, -2.0}));
  const auto tokens = m.require("tokenizer.ggml.tokens").to_strings();
  ASSERT_EQ(tokens.size(), 4u);
  EXPECT_EQ(tokens[2], "ab");
  EXPECT_EQ(tokens[3], "<|im_end|>");
  EXPECT_EQ(m.require("tokenizer.ggml.token_type").to_ints(), (std::vector<int64_t>{1, 1, 1, 3}));
  // Metadata keeps file order.
  EXPECT_EQ(m.entries().front().first, "general.architecture");

  ASSERT_EQ(r.tensors().size(), 3u);
  const TensorInfo& norm = r.tensor("output_norm.weight");
  EXPECT_EQ(norm.type, GgmlType::F32);
  EXPECT_EQ(norm.n_dims, 1u);
  EXPECT_EQ(norm.ne[0], 64);
  ASSERT_EQ(norm.nbytes, 256u);
  float values[64];
  std::memcpy(values, norm.data.data(), sizeof values);
  EXPECT_EQ(values[10], 5.0f);

  const TensorInfo& up = r.tensor("blk.0.ffn_up_exps.weight");
  EXPECT_EQ(up.type, GgmlType::Q8_0);
  EXPECT_EQ(up.shape_string(), "[64, 3, 2]");
  EXPECT_EQ(up.n_rows(), 6);
  EXPECT_EQ(up.row_bytes(), 68u);
  EXPECT_EQ(up.nbytes, 6u * 68);
  for (size_t i = 0; i < up.nbytes; ++i) ASSERT_EQ(up.data[i], std::byte(i * 7 + 1));
  EXPECT_EQ(r.tensor_bytes(), 256u + 408 + 256);
  EXPECT_EQ(r.find_tensor("missing"), nullptr);
  EXPECT_THROW(r.tensor("missing"), Error);
}

TEST(GgufRoundTrip, TensorDataIsAlignedAndMappedInPlace) {
  test::TempDir dir;
  for (uint32_t alignment : {32u, 64u, 4096u}) {
    const std::string path = dir.file("aligned.gguf");
    auto w = test::sample_writer();
    w.set_alignment(alignment);
    w.write(path);
    Reader r(path);
    EXPECT_EQ(r.file(0).alignment(), alignment);
    EXPECT_EQ(r.file(0).data_offset() % alignment, 0u);
    const std::byte* base = r.file(0).bytes().data();
    for (const auto& t : r.tensors()) {
      EXPECT_EQ(t.offset % alignment, 0u) << t.name;
      // The data span points into the mapping: nothing was copied.
      EXPECT_EQ(t.data.data(), base + r.file(0).data_offset() + t.offset);
    }
  }
}

TEST(GgufRoundTrip, InMemoryBytesMatchTheFile) {
  test::TempDir dir;
  const auto w = test::sample_writer();
  w.write(dir.file("a.gguf"));
  const auto bytes = w.to_bytes();
  File in_memory(bytes, "memory");
  File on_disk(dir.file("a.gguf"));
  ASSERT_EQ(in_memory.tensors().size(), on_disk.tensors().size());
  for (size_t i = 0; i < on_disk.tensors().size(); ++i) {
    const auto& a = in_memory.tensors()[i];
    const auto& b = on_disk.tensors()[i];
    EXPECT_EQ(a.name, b.name);
    ASSERT_EQ(a.nbytes, b.nbytes);
    EXPECT_EQ(std::memcmp(a.data.data(), b.data.data(), a.nbytes), 0);
  }
}

TEST(GgufRoundTrip, TypedGettersNameTheKey) {
  test::TempDir dir;
  test::sample_writer().write(dir.file("s.gguf"));
  Reader r(dir.file("s.gguf"));
  try {
    r.metadata().get_uint("general.name");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("general.name"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("string"), std::string::npos) << e.what();
  }
  try {
    r.metadata().get_uint("qwen3moe.expert_count");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing metadata key 'qwen3moe.expert_count'"), std::string::npos);
  }
  EXPECT_EQ(r.metadata().get_uint("qwen3moe.expert_count", 128), 128u);
}

TEST(GgufRoundTrip, WriterRefusesBadTensors) {
  Writer w;
  EXPECT_THROW(w.add_tensor_f32("", {1}, std::vector<float>{1}), Error);
  EXPECT_THROW(w.add_tensor("x", GgmlType::Q8_0, {33}, [](std::span<std::byte>) {}), Error);
  EXPECT_THROW(w.add_tensor("x", GgmlType::F32, {1, 2, 3, 4, 5}, [](std::span<std::byte>) {}), Error);
  w.add_tensor_f32("x", {2}, std::vector<float>{1, 2});
  EXPECT_THROW(w.add_tensor_f32("x", {2}, std::vector<float>{1, 2}), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
}

TEST(GgufRoundTrip, FailedWriteLeavesNoFile) {
  test::TempDir dir;
  Writer w;
  w.add_tensor("x", GgmlType::F32, {4}, [](std::span<std::byte>) { throw Error("generator failed"); });
  EXPECT_THROW(w.write(dir.file("x.gguf")), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf.tmp")));
}

}  // namespace
}  // namespace moe::gguf
