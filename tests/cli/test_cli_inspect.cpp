#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "../gguf/gguf_test_util.h"
#include "cli_runner.h"

namespace moe {
namespace {

TEST(CliInspect, JsonDescribesTheModel) {
  test::TempDir dir;
  test::sample_writer().write(dir.file("m.gguf"));
  const auto r = test::run_cli("inspect --json -m " + test::shell_quote(dir.file("m.gguf")), dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["architecture"], "qwen3moe");
  EXPECT_EQ(j["metadata"]["qwen3moe.block_count"], 2);
  EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"], nlohmann::json({"a", "b", "ab", "<|im_end|>"}));
  EXPECT_EQ(j["tensor_count"], 3);
  EXPECT_EQ(j["tensor_bytes"], 256 + 408 + 256);
  EXPECT_EQ(j["tensor_types"]["q8_0"]["bytes"], 408);
  EXPECT_EQ(j["tensors"][1]["name"], "blk.0.ffn_up_exps.weight");
  EXPECT_EQ(j["tensors"][1]["shape"], nlohmann::json({64, 3, 2}));
}

TEST(CliInspect, TextListsHyperparametersAndTensors) {
  test::TempDir dir;
  test::sample_writer().write_split(dir.file("m"), 2);
  const auto r = test::run_cli("inspect -m " + test::shell_quote(dir.file("m-00001-of-00002.gguf")), dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("(2 files, GGUF v3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("qwen3moe.block_count"), std::string::npos);
  EXPECT_NE(r.out.find("blk.0.ffn_up_exps.weight"), std::string::npos);
  EXPECT_NE(r.out.find("[64, 3, 2]"), std::string::npos);
}

TEST(CliInspect, BadFileIsOneLineAndExitCodeOne) {
  test::TempDir dir;
  auto bytes = test::sample_writer().to_bytes();
  bytes.resize(bytes.size() / 2);
  test::write_bytes(dir.file("cut.gguf"), bytes);
  const auto r = test::run_cli("inspect -m " + test::shell_quote(dir.file("cut.gguf")), dir.file("err"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("error: " + dir.file("cut.gguf") + ": ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(CliInspect, VramBudgetPrintsThePlanAndItsCeilings) {
  test::TempDir dir;
  const std::string model = test::shell_quote(test::make_tiny_model(dir));
  const std::string plan = "inspect -m " + model + " --vram-reserve 1MiB -c 256 --ram-bw 100 --gpu-bw 1000 ";
  const auto r = test::run_cli(plan + "--vram-budget 1GiB", dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("routed experts in VRAM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ceilings at RAM 100 GB/s, GPU 1000 GB/s"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("PCIe experts"), std::string::npos) << r.out;  // only with --pcie-bw
  const auto linked = test::run_cli(plan + "--vram-budget 1GiB --cpu-moe --pcie-bw 50 --json", dir.file("err"));
  ASSERT_EQ(linked.exit_code, 0) << linked.err;
  EXPECT_EQ(nlohmann::json::parse(linked.out)["pcie_gb_s"], 50.0);

  const auto j = test::run_cli(plan + "--vram-budget 1GiB --cpu-moe --json", dir.file("err"));
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const auto plan_json = nlohmann::json::parse(j.out);
  EXPECT_EQ(plan_json["expert_bytes_vram"], 0);  // --cpu-moe: every expert in RAM
  EXPECT_EQ(plan_json["hit_rate"], 0.0);
  EXPECT_GT(plan_json["ceiling_overlapped_ts"].get<double>(), 0.0);

  // Qwen3-Next's locality cannot be had with 8 experts, 2 a token (an LRU cache of one expert
  // would have to hit 67% of the picks; at most half can be the previous pick): a clear error.
  const auto local = test::run_cli(plan + "--vram-budget 1GiB --routing local", dir.file("err"));
  EXPECT_EQ(local.exit_code, 1);
  EXPECT_NE(local.err.find("routing locality: no depth weights"), std::string::npos) << local.err;

  const auto small = test::run_cli(plan + "--vram-budget 1KiB", dir.file("err"));  // not even the weights fit
  EXPECT_EQ(small.exit_code, 1);
  EXPECT_NE(small.err.find("--vram-budget 1.00 KiB is too small"), std::string::npos) << small.err;
  EXPECT_EQ(std::count(small.err.begin(), small.err.end(), '\n'), 1) << small.err;

  const auto both = test::run_cli(plan + "--vram-budget 1GiB --cpu-moe --n-cpu-moe 1", dir.file("err"));
  EXPECT_NE(both.exit_code, 0);  // one or the other
}

TEST(CliInspect, MissingArgumentIsAUsageError) {
  test::TempDir dir;
  const auto r = test::run_cli("inspect", dir.file("err"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--model"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moe

namespace moe {
namespace {

// CI machines have no GPU driver: the binary (CUDA backend included, when built) must still
// start, say so and carry on on the CPU.
TEST(CliDevices, RunsWithOrWithoutAGpu) {
  test::TempDir dir;
  const auto r = test::run_cli("devices", dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("cpu "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gpu"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace moe
