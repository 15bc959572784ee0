#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "gguf/reader.h"
#include "gguf_test_util.h"

namespace moe::gguf {
namespace {

std::string error_of(const std::string& path) {
  try {
    Reader r(path);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(GgufSplit, PathNames) {
  EXPECT_EQ(split_path("/m/Qwen3-Next-Q8_0", 0, 2), "/m/Qwen3-Next-Q8_0-00001-of-00002.gguf");
  std::string prefix;
  uint32_t index = 0, count = 0;
  ASSERT_TRUE(parse_split_path("/m/Qwen3-Next-Q8_0-00002-of-00003.gguf", &prefix, &index, &count));
  EXPECT_EQ(prefix, "/m/Qwen3-Next-Q8_0");
  EXPECT_EQ(index, 1u);
  EXPECT_EQ(count, 3u);
  EXPECT_FALSE(parse_split_path("/m/model.gguf", &prefix, &index, &count));
  EXPECT_FALSE(parse_split_path("/m/model-00004-of-00003.gguf", &prefix, &index, &count));
  EXPECT_FALSE(parse_split_path("/m/model-0001-of-0003.gguf", &prefix, &index, &count));
}

TEST(GgufSplit, ThreeShardsLoadAsOneModel) {
  test::TempDir dir;
  const auto w = test::sample_writer();
  const std::string first = w.write_split(dir.file("model"), 3);
  EXPECT_EQ(first, dir.file("model-00001-of-00003.gguf"));
  Reader r(first);
  EXPECT_EQ(r.n_files(), 3u);
  EXPECT_EQ(r.architecture(), "qwen3moe");
  ASSERT_EQ(r.tensors().size(), 3u);
  // Each tensor comes from its own shard, with its own bytes.
  EXPECT_EQ(r.tensor("output_norm.weight").file_index, 0u);
  EXPECT_EQ(r.tensor("blk.0.ffn_up_exps.weight").file_index, 1u);
  EXPECT_EQ(r.tensor("token_embd.weight").file_index, 2u);
  const auto& up = r.tensor("blk.0.ffn_up_exps.weight");
  for (size_t i = 0; i < up.nbytes; ++i) ASSERT_EQ(up.data[i], std::byte(i * 7 + 1));
  // Same content as the single-file model.
  w.write(dir.file("single.gguf"));
  Reader single(dir.file("single.gguf"));
  EXPECT_EQ(single.tensor_bytes(), r.tensor_bytes());
}

TEST(GgufSplit, OpeningALaterShardPointsToTheFirst) {
  test::TempDir dir;
  test::sample_writer().write_split(dir.file("model"), 2);
  const std::string message = error_of(dir.file("model-00002-of-00002.gguf"));
  EXPECT_NE(message.find("this is shard 2 of 2; open the first shard instead"), std::string::npos) << message;
}

TEST(GgufSplit, MissingShardIsNamed) {
  test::TempDir dir;
  test::sample_writer().write_split(dir.file("model"), 3);
  std::filesystem::remove(dir.file("model-00003-of-00003.gguf"));
  const std::string message = error_of(dir.file("model-00001-of-00003.gguf"));
  EXPECT_NE(message.find("model-00003-of-00003.gguf: cannot open"), std::string::npos) << message;
}

TEST(GgufSplit, RenamedFirstShardCannotFindTheOthers) {
  test::TempDir dir;
  test::sample_writer().write_split(dir.file("model"), 2);
  std::filesystem::rename(dir.file("model-00001-of-00002.gguf"), dir.file("renamed.gguf"));
  const std::string message = error_of(dir.file("renamed.gguf"));
  EXPECT_NE(message.find("does not follow"), std::string::npos) << message;
}

TEST(GgufSplit, ShardFromAnotherSetIsRejected) {
  test::TempDir dir;
  test::sample_writer().write_split(dir.file("model"), 2);
  test::sample_writer().write_split(dir.file("other"), 3);
  // Put shard 2-of-3 of another set where shard 2-of-2 should be.
  std::filesystem::copy_file(dir.file("other-00002-of-00003.gguf"), dir.file("model-00002-of-00002.gguf"),
                             std::filesystem::copy_options::overwrite_existing);
  const std::string message = error_of(dir.file("model-00001-of-00002.gguf"));
  EXPECT_NE(message.find("expected shard 2 of 2"), std::string::npos) << message;
}

TEST(GgufSplit, TensorCountMustMatch) {
  test::TempDir dir;
  auto w = test::sample_writer();
  w.write_split(dir.file("model"), 2);
  // Replace the second shard with one holding no tensors.
  Writer empty;
  empty.set_u16("split.no", 1);
  empty.set_u16("split.count", 2);
  empty.set_i32("split.tensors.count", 3);
  empty.write(dir.file("model-00002-of-00002.gguf"));
  const std::string message = error_of(dir.file("model-00001-of-00002.gguf"));
  EXPECT_NE(message.find("'split.tensors.count' says 3 tensors"), std::string::npos) << message;
}

}  // namespace
}  // namespace moe::gguf
