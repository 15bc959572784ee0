// `moeserve synth` as a user runs it: the README's command works with no other input, and bad
// arguments give one clear error line, exit code 1 and no file.
#include <gtest/gtest.h>

#include "../cli/cli_runner.h"
#include "synth_test_util.h"

namespace moe::test {
namespace {

TEST(SynthCli, TinyModelWithNoOtherInput) {
  ScratchDir dir("cli_ok");
  const auto r = run_cli("synth --arch qwen3moe --preset tiny -o " + shell_quote(dir.file("tiny.gguf")), dir.file("err"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("GB/s"), std::string::npos) << r.err;
  const gguf::Reader model(dir.file("tiny.gguf"));
  EXPECT_EQ(model.architecture(), "qwen3moe");
  // And the model loads in `inspect` / `tokenize` like any other.
  const auto tok = run_cli("tokenize --ids -m " + shell_quote(dir.file("tiny.gguf")) + " 'Hello world'", dir.file("err2"));
  EXPECT_EQ(tok.exit_code, 0) << tok.err;
  EXPECT_EQ(tok.out.front(), '[');
}

TEST(SynthCli, BadArgumentsFailClearlyAndLeaveNoFile) {
  ScratchDir dir("cli_bad");
  ScratchDir logs("cli_bad_logs");
  const std::string out = " -o " + shell_quote(dir.file("m.gguf"));
  const std::pair<std::string, std::string> cases[] = {
      {"synth --arch llama --preset tiny" + out, "unknown --arch 'llama'"},
      {"synth --arch qwen3moe --preset 70b" + out, "no preset '70b'"},
      {"synth --arch qwen3 --preset 30b-a3b" + out, "no preset '30b-a3b'"},
      {"synth --arch qwen3moe --preset tiny --type q3_k" + out, "unknown --type 'q3_k'"},
      {"synth --arch qwen3moe --preset tiny --layers 0" + out, "--layers 0"},
      {"synth --arch qwen3moe --preset tiny --vocab /nonexistent/vocab.gguf" + out, "/nonexistent/vocab.gguf"},
      {"synth --arch qwen3moe --preset tiny -o /nonexistent-dir/m.gguf", "/nonexistent-dir/m.gguf"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run_cli(args, logs.file("err"));
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << "\n" << r.err;
    EXPECT_TRUE(dir.entries().empty()) << args;
  }
}

}  // namespace
}  // namespace moe::test
