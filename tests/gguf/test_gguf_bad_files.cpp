// Hand-made bad files: each breaks one field, and the reader must answer with one clear error
// that names the field, never a crash, a hang or a huge allocation.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "gguf/file.h"
#include "gguf/reader.h"
#include "gguf_test_util.h"

namespace moe::gguf {
namespace {

using test::RawGguf;

// Parses the bytes and returns the error message ("" if the file was accepted).
std::string error_of(const std::vector<std::byte>& bytes) {
  try {
    File f(bytes, "bad.gguf");
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

#define EXPECT_ERROR_MENTIONS(bytes, text)                                         \
  do {                                                                             \
    const std::string message = error_of(bytes);                                   \
    EXPECT_NE(message, "") << "file was accepted";                                 \
    EXPECT_NE(message.find(text), std::string::npos) << "message: " << message;    \
    EXPECT_EQ(message.rfind("bad.gguf: ", 0), 0u) << "message: " << message;       \
  } while (0)

constexpr uint32_t kF32 = 0, kQ8_0 = 8;

TEST(GgufBadFiles, HeaderFields) {
  EXPECT_ERROR_MENTIONS(RawGguf().bytes, "not a GGUF file");
  EXPECT_ERROR_MENTIONS(RawGguf().magic("GGML").u32(3).u64(0).u64(0).bytes, "not a GGUF file");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 0, 1).bytes, "version 1 is obsolete");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 0, 4).bytes, "unsupported GGUF version 4");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 0, 0x03000000).bytes, "big-endian");
  EXPECT_ERROR_MENTIONS(RawGguf().magic().u32(3).u64(0).bytes, "metadata count");
  EXPECT_EQ(error_of(RawGguf().header(0, 0).bytes), "");  // empty but valid
  EXPECT_EQ(error_of(RawGguf().header(0, 0, 2).bytes), "");  // version 2 is still readable
}

TEST(GgufBadFiles, AbsurdCountsAreRejectedBeforeAllocating) {
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, uint64_t(1) << 60).bytes, "metadata count 1152921504606846976 is impossible");
  EXPECT_ERROR_MENTIONS(RawGguf().header(~uint64_t(0), 0).bytes, "tensor count");
  // A string array claiming 2^62 elements.
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).str("tokenizer.ggml.tokens").u32(9).u32(8).u64(uint64_t(1) << 62).bytes,
                        "strings cannot fit");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).str("x").u32(9).u32(4).u64(uint64_t(1) << 62).bytes, "exceeds");
}

TEST(GgufBadFiles, MetadataFields) {
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).u64(uint64_t(1) << 40).zeros(16).bytes, "string length 1099511627776 exceeds");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).str("").u32(4).u32(1).bytes, "empty key");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).str("general.x").u32(99).u32(1).bytes,
                        "metadata key 'general.x' type: unknown value type id 99");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).str("a").u32(9).u32(9).u64(1).bytes, "arrays of arrays");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).str("a").u32(9).u32(77).u64(1).bytes, "unknown value type id 77");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 2).kv_u32("a", 1).kv_u32("a", 2).bytes, "metadata key 'a' appears twice");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).str("a").u32(4).u8(1).bytes, "truncated");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).kv_string("general.alignment", "32").bytes, "must be u32");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).kv_u32("general.alignment", 48).bytes, "not a power of two");
  EXPECT_ERROR_MENTIONS(RawGguf().header(0, 1).kv_u32("general.alignment", 0).bytes, "not a power of two");
}

TEST(GgufBadFiles, TensorFields) {
  auto one_tensor = [](std::vector<int64_t> ne, uint32_t type, uint64_t offset, size_t data = 64) {
    return RawGguf().header(1, 0).tensor("blk.3.ffn_up_exps.weight", ne, type, offset).align().zeros(data).bytes;
  };
  EXPECT_EQ(error_of(one_tensor({16}, kF32, 0)), "");
  EXPECT_ERROR_MENTIONS(one_tensor({}, kF32, 0), "0 dimensions");
  EXPECT_ERROR_MENTIONS(one_tensor({1, 1, 1, 1, 1}, kF32, 0), "5 dimensions");
  EXPECT_ERROR_MENTIONS(one_tensor({16, -2}, kF32, 0), "dimension 1 is -2");
  EXPECT_ERROR_MENTIONS(one_tensor({16, 0}, kF32, 0), "dimension 1 is 0");
  EXPECT_ERROR_MENTIONS(one_tensor({16}, 31, 0), "unknown tensor type id 31");
  EXPECT_ERROR_MENTIONS(one_tensor({16}, 1000, 0), "unknown tensor type id 1000");
  EXPECT_ERROR_MENTIONS(one_tensor({33}, kQ8_0, 0), "row length 33 is not a multiple of the q8_0 block size 32");
  EXPECT_ERROR_MENTIONS(one_tensor({int64_t(1) << 40, int64_t(1) << 40}, kF32, 0), "2^63");
  EXPECT_ERROR_MENTIONS(one_tensor({16}, kF32, 8), "offset 8 is not a multiple of the alignment 32");
  // The example from the style guide: an offset far past the end of the file.
  EXPECT_ERROR_MENTIONS(one_tensor({16}, kF32, uint64_t(812) << 30), "tensor blk.3.ffn_up_exps.weight: data at offset 812 GiB");
  EXPECT_ERROR_MENTIONS(one_tensor({16}, kF32, 0, 32), "runs past the end of the file");
  EXPECT_ERROR_MENTIONS(RawGguf().header(1, 0).tensor("", {16}, kF32, 0).align().zeros(64).bytes, "empty name");
  EXPECT_ERROR_MENTIONS(RawGguf().header(2, 0).tensor("t", {8}, kF32, 0).tensor("t", {8}, kF32, 32).align().zeros(64).bytes,
                        "tensor t appears twice");
  EXPECT_ERROR_MENTIONS(RawGguf().header(2, 0).tensor("a", {16}, kF32, 0).tensor("b", {8}, kF32, 32).align().zeros(96).bytes,
                        "overlap");
  // Tensor directory complete but the data section's start lies past the end.
  EXPECT_ERROR_MENTIONS(RawGguf().header(1, 0).tensor("t", {8}, kF32, 0).bytes, "data section");
}

TEST(GgufBadFiles, EveryTruncationOfAValidFileIsAnError) {
  const auto bytes = test::sample_writer().to_bytes();
  const File complete(bytes, "bad.gguf");
  // Cutting the file anywhere before the end of the last tensor's data must be refused.
  uint64_t end_of_data = 0;
  for (const auto& t : complete.tensors()) end_of_data = std::max(end_of_data, complete.data_offset() + t.offset + t.nbytes);
  for (size_t n = 0; n < end_of_data; ++n) {
    const std::vector<std::byte> cut(bytes.begin(), bytes.begin() + n);
    ASSERT_NE(error_of(cut), "") << "accepted a file cut at " << n << " of " << bytes.size() << " bytes";
  }
}

TEST(GgufBadFiles, RandomCorruptionNeverCrashes) {
  const auto original = test::sample_writer().to_bytes();
  std::mt19937 rng(1234);
  int rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    auto bytes = original;
    const int flips = 1 + int(rng() % 4);
    for (int i = 0; i < flips; ++i) bytes[rng() % bytes.size()] = std::byte(rng());
    try {
      File f(bytes, "fuzzed.gguf");
      // Anything accepted must be internally consistent.
      for (const auto& t : f.tensors()) {
        ASSERT_LE(f.data_offset() + t.offset + t.nbytes, bytes.size());
        ASSERT_EQ(t.data.data(), bytes.data() + f.data_offset() + t.offset);
      }
      for (const auto& [key, value] : f.metadata().entries()) (void)value.to_display();
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 100);  // most corruptions of the header region are caught
}

TEST(GgufBadFiles, ReaderErrorsNameThePath) {
  test::TempDir dir;
  try {
    Reader r(dir.file("does-not-exist.gguf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist.gguf: cannot open"), std::string::npos) << e.what();
  }
  test::write_bytes(dir.file("empty.gguf"), {});
  EXPECT_THROW(Reader(dir.file("empty.gguf")), Error);
  EXPECT_THROW(Reader(dir.file("")), Error);
}

}  // namespace
}  // namespace moe::gguf
