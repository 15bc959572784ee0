// moeserve bench, perplexity and compare run as a user would, on a tiny synth model.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "../gguf/gguf_test_util.h"
#include "cli_runner.h"

namespace moe {
namespace {

std::string write_text(const test::TempDir& dir, int sentences) {
  const std::string path = dir.file("text.txt");
  std::ofstream out(path);
  for (int i = 0; i < sentences; ++i) out << "The quick brown fox " << i << " jumps over the lazy dog. ";
  return path;
}

TEST(CliPerplexity, PrintsProgressAndTheFinalEstimate) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const std::string text = write_text(dir, 40);
  const auto r = test::run_cli("perplexity -t 2 -c 32 -b 16 -m " + test::shell_quote(model) + " -f " +
                                   test::shell_quote(text),
                               dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("[1]", 0), 0u) << r.out;
  const auto at = r.out.find("Final estimate: PPL = ");
  ASSERT_NE(at, std::string::npos) << r.out;
  double ppl = 0, plus_minus = -1;
  ASSERT_EQ(std::sscanf(r.out.c_str() + at, "Final estimate: PPL = %lf +/- %lf", &ppl, &plus_minus), 2) << r.out;
  EXPECT_GT(ppl, 1.0);
  EXPECT_GT(plus_minus, 0.0);
}

TEST(CliPerplexity, TooShortAFileIsOneLineAndExitCodeOne) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const std::string text = write_text(dir, 1);
  const auto r = test::run_cli("perplexity -c 512 -m " + test::shell_quote(model) + " -f " + test::shell_quote(text),
                               dir.file("err"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error: perplexity: the text has"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("needs at least 1024"), std::string::npos) << r.err;
}

// The CPU engine against itself agrees everywhere (exit 0, a JSON row per checkpoint); the
// JSON names the first divergence as null. A bad -o is one line and exit code 1.
TEST(CliCompare, JsonListsEveryCheckpointAndNoDivergence) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto r = test::run_cli("compare --device cpu -t 2 -p 3 -n 1 -o json -m " + test::shell_quote(model),
                               dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["first_divergent"].is_null());
  EXPECT_EQ(j["reference"], "CPU");
  ASSERT_GT(j["diffs"].size(), 4u);
  EXPECT_EQ(j["diffs"][0]["name"], "embd");
  EXPECT_EQ(j["diffs"].back()["name"], "logits");
  EXPECT_EQ(j["diffs"].back()["step"], 1);
  const auto bad = test::run_cli("compare -o xml --device cpu -m " + test::shell_quote(model), dir.file("err"));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("-o must be md or json"), std::string::npos) << bad.err;
}

TEST(CliBench, JsonHasLlamaBenchFieldsAndSaneValues) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto r = test::run_cli("bench -o json -p 16 -n 4 -r 2 -t 2 --mem-bw 50 -m " + test::shell_quote(model),
                               dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  for (const char* field : {"model_filename", "model_type", "model_size", "model_n_params", "n_threads", "n_prompt",
                            "n_gen", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns",
                            "samples_ts", "cpu_info", "kv_type", "weight_bytes_per_token", "ms_per_token"}) {
    EXPECT_TRUE(j[0].contains(field)) << field;
    EXPECT_TRUE(j[1].contains(field)) << field;
  }
  EXPECT_EQ(j[0]["n_prompt"], 16);
  EXPECT_EQ(j[0]["n_gen"], 0);
  EXPECT_EQ(j[1]["n_prompt"], 0);
  EXPECT_EQ(j[1]["n_gen"], 4);
  EXPECT_EQ(j[0]["n_threads"], 2);
  EXPECT_EQ(j[0]["kv_type"], "f16");
  for (const auto& row : j) {
    EXPECT_GT(row["avg_ts"].get<double>(), 0);
    EXPECT_EQ(row["samples_ns"].size(), 2u);
    EXPECT_EQ(row["samples_ts"].size(), 2u);
    EXPECT_GT(row["model_size"].get<uint64_t>(), row["weight_bytes_per_token"].get<uint64_t>());
  }
  EXPECT_FALSE(j[0].contains("roofline_ts"));  // the bandwidth ceiling is a decode figure
  EXPECT_FALSE(j[0].contains("weight_gb_s"));
  EXPECT_NEAR(j[1]["roofline_ts"].get<double>(), 50e9 / j[1]["weight_bytes_per_token"].get<double>(), 1e-6);
  // The achieved weight stream of the decode test, and its share of the given bandwidth.
  const double streamed = j[1]["weight_bytes_per_token"].get<double>() * j[1]["avg_ts"].get<double>() / 1e9;
  EXPECT_NEAR(j[1]["weight_gb_s"].get<double>(), streamed, 1e-9 * streamed);
  EXPECT_NEAR(j[1]["roofline_fraction"].get<double>(), streamed / 50, 1e-9 * streamed);
}

TEST(CliBench, MarkdownSaysHowFastDecodeStreamsTheWeights) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto r = test::run_cli("bench -p 0 -n 2 -r 1 -t 1 --mem-bw 40 -m " + test::shell_quote(model), dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("decode roofline at 40.0 GB/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tg2 streams the weights at "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("% of the roofline)"), std::string::npos) << r.out;
}

TEST(CliBench, MarkdownIsALlamaBenchTable) {
  test::TempDir dir;
  const std::string model = test::make_tiny_model(dir);
  const auto r = test::run_cli("bench -p 8 -n 0 -r 1 -t 1 -m " + test::shell_quote(model), dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("| model", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("| CPU "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pp8 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("tg"), std::string::npos) << r.out;  // -n 0 skips tg
  EXPECT_NE(r.out.find(" ± "), std::string::npos) << r.out;
}

}  // namespace
}  // namespace moe
