// --prefault and --mlock on run, bench and perplexity: the load line, the bench JSON fields.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "../gguf/gguf_test_util.h"
#include "cli_runner.h"

namespace moe {
namespace {

TEST(CliLoad, RunPopulatesLocksAndLogsTheLoadLine) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto r = test::run_cli("run --prefault populate --mlock -n 2 -t 2 --seed 1 -p Hello -m " +
                                   test::shell_quote(model),
                               dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("load: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("% in page cache ("), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("populated"), std::string::npos) << r.err;
  // Locked, or (under a low RLIMIT_MEMLOCK) a warning and the run goes on.
  const bool locked = r.err.find("and locked in") != std::string::npos;
  const bool warned = r.err.find("cannot mlock") != std::string::npos;
  EXPECT_TRUE(locked != warned) << r.err;
}

TEST(CliLoad, NoMmapReadsIntoHugePagesAndGeneratesTheSameText) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const std::string args = "run -n 12 -t 2 --seed 3 --temp 0 -p Hello -m " + test::shell_quote(model);
  const auto mapped = test::run_cli(args, dir.file("err1"));
  const auto copied = test::run_cli(args + " --no-mmap", dir.file("err2"));
  ASSERT_EQ(mapped.exit_code, 0) << mapped.err;
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  EXPECT_NE(copied.err.find("read into anonymous huge-page memory"), std::string::npos) << copied.err;
  EXPECT_EQ(mapped.out, copied.out);
}

TEST(CliLoad, RunDefaultsToAdviseAndRejectsUnknownPolicies) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto ok = test::run_cli("run -n 1 --seed 1 -p Hello -m " + test::shell_quote(model), dir.file("err"));
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.err.find("read-ahead advised"), std::string::npos) << ok.err;
  const auto bad =
      test::run_cli("run --prefault eager -n 1 -p Hello -m " + test::shell_quote(model), dir.file("err"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--prefault"), std::string::npos) << bad.err;
}

TEST(CliLoad, BenchJsonCarriesTheLoadReport) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto r = test::run_cli("bench -o json -p 8 -n 0 -r 1 -t 1 -m " + test::shell_quote(model), dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["load_prefault"], "populate");  // bench's default: no disk reads in repetition one
  EXPECT_EQ(j[0]["load_mlock"], false);
  EXPECT_GE(j[0]["load_resident_pct"].get<double>(), 0.0);
  EXPECT_LE(j[0]["load_resident_pct"].get<double>(), 100.0);
  EXPECT_EQ(j[0]["load_warm"].get<bool>(), j[0]["load_resident_pct"].get<double>() >= 90.0);
  EXPECT_GE(j[0]["load_seconds"].get<double>(), 0.0);
}

// The hybrid placement's options: the CPU computes the experts left in RAM while the GPU runs
// the rest; without a GPU, one clear line. llama.cpp's two forms exclude each other.
TEST(CliLoad, HybridPlacementRunsWhereThereIsAGpuAndSaysWhyNotElsewhere) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto devices = test::run_cli("devices", dir.file("err"));
  ASSERT_EQ(devices.exit_code, 0) << devices.err;
  const bool gpu = devices.out.find("gpu   none") == std::string::npos;
  const std::string bench = "bench -o json -p 8 -n 2 -r 1 -t 2 -m " + test::shell_quote(model);
  const auto r = test::run_cli(bench + " --cpu-moe", dir.file("err"));
  if (gpu) {
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j[0]["vram_expert_hit_rate"].get<double>(), 0.0);  // every expert on the CPU
  } else {
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("error: --vram-budget / --n-cpu-moe"), std::string::npos) << r.err;
  }
  const auto cpu = test::run_cli(bench + " --vram-budget 1GiB --device cpu", dir.file("err"));
  EXPECT_EQ(cpu.exit_code, 1);
  EXPECT_NE(cpu.err.find("not with --device cpu"), std::string::npos) << cpu.err;
  const auto both = test::run_cli(bench + " --cpu-moe --n-cpu-moe 1", dir.file("err"));
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
  // --pcie-experts takes a count or auto, nothing else.
  for (const char* bad : {"many", "-2", "3x", ""}) {
    const auto r = test::run_cli(bench + " --cpu-moe --pcie-experts '" + bad + "'", dir.file("err"));
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find("neither auto nor a count"), std::string::npos) << bad << ": " << r.err;
  }
  for (const char* good : {"auto", "0", "3"}) {
    const auto r = test::run_cli(bench + " --cpu-moe --pcie-experts " + good, dir.file("err"));
    EXPECT_EQ(r.exit_code, gpu ? 0 : 1) << good << ": " << r.err;
    EXPECT_EQ(r.err.find("neither auto nor a count"), std::string::npos) << good << ": " << r.err;
  }
  // --expert-cache is on or off (the count it took before is refused, not misread).
  for (const char* bad : {"4", "yes", ""}) {
    const auto r = test::run_cli(bench + " --cpu-moe --expert-cache '" + bad + "'", dir.file("err"));
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find("neither on nor off"), std::string::npos) << bad << ": " << r.err;
  }
  for (const char* good : {"on", "off"}) {
    const auto r = test::run_cli(bench + " --cpu-moe --expert-cache " + good, dir.file("err"));
    EXPECT_EQ(r.exit_code, gpu ? 0 : 1) << good << ": " << r.err;
    EXPECT_EQ(r.err.find("neither on nor off"), std::string::npos) << good << ": " << r.err;
  }
}

TEST(CliLoad, PerplexityTakesTheSameOptions) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const std::string text = dir.file("text.txt");
  {
    std::ofstream out(text);
    for (int i = 0; i < 20; ++i) out << "The quick brown fox " << i << " jumps over the lazy dog. ";
  }
  const auto r = test::run_cli("perplexity --prefault none -t 2 -c 32 -b 16 -m " + test::shell_quote(model) +
                                   " -f " + test::shell_quote(text),
                               dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("not prefaulted"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moe
