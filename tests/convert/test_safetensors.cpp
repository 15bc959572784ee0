// The safetensors reader: valid files parse into zero-copy views; every kind of malformed file
// is refused with an error naming the file and what is wrong.
#include <gtest/gtest.h>

#include "core/error.h"
#include "formats/safetensors.h"
#include "formats/safetensors_checkpoint.h"
#include "hf_fixture.h"

namespace moe::test {
namespace {

using formats::SafeDType;
using formats::SafetensorsCheckpoint;
using formats::SafetensorsFile;

std::vector<RawTensor> three_tensors() {
  return {
      {"a.f32", "F32", {2, 3}, encode({1, 2, 3, 4, 5, -6.5f}, "F32")},
      {"b.f16", "F16", {4}, encode({0.5f, -2, 1024, 0.25f}, "F16")},
      {"c.bf16", "BF16", {1, 2}, encode({3, -0.125f}, "BF16")},
  };
}

// Expects `image` to be refused with a message containing the file name and `needle`.
void expect_bad(const std::vector<std::byte>& image, const std::string& needle) {
  try {
    SafetensorsFile f(image, "bad.safetensors");
    FAIL() << "accepted a bad file; expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(Safetensors, ParsesTensorsMetadataAndZeroCopySpans) {
  const auto image = safetensors_image(three_tensors(), {{"format", "pt"}});
  const SafetensorsFile f(image, "good.safetensors");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const auto* a = f.find("a.f32");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, SafeDType::F32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->row_length(), 3);
  EXPECT_EQ(a->n_rows(), 2);
  // The span points into the image itself: no copy.
  EXPECT_GE(a->data.data(), image.data());
  EXPECT_LE(a->data.data() + a->data.size(), image.data() + image.size());
  std::vector<float> v(6);
  formats::to_f32(a->dtype, a->data, v);
  EXPECT_EQ(v, (std::vector<float>{1, 2, 3, 4, 5, -6.5f}));
  const auto* b = f.find("b.f16");
  std::vector<float> vb(4);
  formats::to_f32(b->dtype, b->data, vb);
  EXPECT_EQ(vb, (std::vector<float>{0.5f, -2, 1024, 0.25f}));
  const auto* c = f.find("c.bf16");
  std::vector<float> vc(2);
  formats::to_f32(c->dtype, c->data, vc);
  EXPECT_EQ(vc, (std::vector<float>{3, -0.125f}));
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(Safetensors, EmptyAndScalarTensorsAreValid) {
  const auto image = safetensors_image({{"empty", "F32", {0, 4}, {}}, {"scalar", "F16", {}, encode({1.5f}, "F16")}});
  const SafetensorsFile f(image, "x.safetensors");
  EXPECT_EQ(f.find("empty")->n_elements(), 0);
  EXPECT_EQ(f.find("scalar")->n_elements(), 1);
}

TEST(SafetensorsBadFiles, TooSmallAndHeaderLengths) {
  expect_bad(std::vector<std::byte>(5), "too small");
  auto image = safetensors_image(three_tensors());
  uint64_t huge = 1ull << 40;
  std::memcpy(image.data(), &huge, 8);
  expect_bad(image, "exceeds");
  uint64_t past = image.size();  // fits the cap but not the file
  std::memcpy(image.data(), &past, 8);
  expect_bad(image, "past the end");
}

TEST(SafetensorsBadFiles, MalformedJson) {
  expect_bad(safetensors_image_raw("{\"a\": {\"dtype\": \"F32\"", 0), "malformed JSON");
  expect_bad(safetensors_image_raw("[1, 2]", 0), "not a JSON object");
  expect_bad(safetensors_image_raw("{\"a\": [[[[[1]]]]]}", 0), "nested deeper");
  expect_bad(safetensors_image_raw("{\"a\": \"\xff\"}", 0), "malformed JSON");
}

TEST(SafetensorsBadFiles, DuplicateNames) {
  expect_bad(safetensors_image_raw(
                 R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8),
             "appears twice");
}

TEST(SafetensorsBadFiles, Dtypes) {
  expect_bad(safetensors_image({{"i", "I64", {1}, std::vector<std::byte>(8)}}), "dtype I64 is not supported");
  expect_bad(safetensors_image({{"q", "F8_E4M3", {4}, std::vector<std::byte>(4)}}), "not supported");
  expect_bad(safetensors_image({{"z", "F17", {1}, std::vector<std::byte>(4)}}), "unknown dtype 'F17'");
}

TEST(SafetensorsBadFiles, ShapeAndRanges) {
  // Shape says 3 floats, range holds 2.
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8), "needs 12 bytes");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4), "not a non-negative integer");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4), "not a non-negative integer");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 4]}})", 4), "more elements");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4), "run past the data area");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8), "end before they begin");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4), "data_offsets");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [1]}})", 4), "missing key 'data_offsets'");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}})", 4), "unexpected field 'x'");
  expect_bad(safetensors_image_raw(R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})", 4), "dimensions");
}

TEST(SafetensorsBadFiles, OverlapsHolesAndTrailingBytes) {
  expect_bad(safetensors_image_raw(
                 R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12),
             "overlaps");
  expect_bad(safetensors_image_raw(
                 R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})", 12),
             "hole");
  expect_bad(safetensors_image_raw(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 9), "trailing");
}

TEST(SafetensorsBadFiles, Metadata) {
  expect_bad(safetensors_image_raw(R"({"__metadata__": {"k": 1}})", 0), "__metadata__ key 'k'");
  expect_bad(safetensors_image_raw(R"({"__metadata__": [1]})", 0), "__metadata__ must be an object");
}

TEST(SafetensorsBadFiles, TruncatedRealFileFromDisk) {
  TempDir dir;
  auto image = safetensors_image(three_tensors());
  image.resize(image.size() - 3);
  write_bytes(dir.file("t.safetensors"), image);
  try {
    SafetensorsFile f(dir.file("t.safetensors"));
    FAIL() << "accepted a truncated file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.safetensors"), std::string::npos) << e.what();
  }
}

// Sharded checkpoints: the index and the shards must agree exactly.
class CheckpointIndex : public ::testing::Test {
 protected:
  void write_shards() {
    write_bytes(dir.file("model-00001-of-00002.safetensors"), safetensors_image({{"x", "F32", {1}, encode({1}, "F32")}}));
    write_bytes(dir.file("model-00002-of-00002.safetensors"), safetensors_image({{"y", "F32", {1}, encode({2}, "F32")}}));
  }
  void write_index(const Json& weight_map) {
    write_text(dir.file("model.safetensors.index.json"), Json{{"weight_map", weight_map}}.dump());
  }
  std::string error() {
    try {
      SafetensorsCheckpoint ck(dir.file(""));
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  }
  TempDir dir;
};

TEST_F(CheckpointIndex, OpensAllShards) {
  write_shards();
  write_index({{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}});
  SafetensorsCheckpoint ck(dir.file(""));
  EXPECT_EQ(ck.n_files(), 2u);
  std::vector<float> v(1);
  formats::to_f32(ck.get("y").dtype, ck.get("y").data, v);
  EXPECT_EQ(v[0], 2.0f);
  EXPECT_EQ(ck.names(), (std::vector<std::string_view>{"x", "y"}));
}

TEST_F(CheckpointIndex, Mismatches) {
  write_shards();
  // A shard holding a tensor the index does not list.
  write_bytes(dir.file("model-00001-of-00002.safetensors"),
              safetensors_image({{"w", "F32", {1}, encode({0}, "F32")}, {"x", "F32", {1}, encode({1}, "F32")}}));
  write_index({{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}});
  EXPECT_NE(error().find("tensor 'w'"), std::string::npos) << error();
  EXPECT_NE(error().find("not listed in the index"), std::string::npos) << error();
  write_shards();
  // The index puts x in the wrong shard.
  write_index({{"x", "model-00002-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}});
  EXPECT_NE(error().find("does not contain it"), std::string::npos) << error();
  // The same tensor in two shards.
  write_bytes(dir.file("model-00002-of-00002.safetensors"),
              safetensors_image({{"x", "F32", {1}, encode({1}, "F32")}, {"y", "F32", {1}, encode({2}, "F32")}}));
  write_index({{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}});
  EXPECT_NE(error().find("is also in"), std::string::npos) << error();
  write_shards();
  write_index({{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"},
               {"z", "model-00003-of-00003.safetensors"}});
  EXPECT_NE(error().find("missing"), std::string::npos) << error();
  write_index({{"x", "../model-00001-of-00002.safetensors"}});
  EXPECT_NE(error().find("not a .safetensors file name"), std::string::npos) << error();
  write_index(Json::array());
  EXPECT_NE(error().find("weight_map"), std::string::npos) << error();
}

TEST_F(CheckpointIndex, NoWeightsAtAll) {
  EXPECT_NE(error().find("no model.safetensors"), std::string::npos) << error();
}

}  // namespace
}  // namespace moe::test
