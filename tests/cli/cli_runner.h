#pragma once
// Runs the moeserve binary as a user would and captures stdout, stderr and the exit code.
#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include "../gguf/gguf_test_util.h"

namespace moe::test {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `args` is appended to the binary path as shell words (quote them with shell_quote).
inline CliResult run_cli(const std::string& args, const std::string& err_file) {
  CliResult r;
  const std::string cmd = std::string(MOE_BINARY) + " " + args + " 2>" + shell_quote(err_file);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_file);
  std::stringstream ss;
  ss << err.rdbuf();
  r.err = ss.str();
  return r;
}

// A tiny synth Qwen3-MoE model written by the CLI into `dir`; its path.
inline std::string make_tiny_model(const TempDir& dir) {
  const std::string path = dir.file("tiny.gguf");
  const auto r = run_cli("synth --arch qwen3moe --preset tiny -o " + shell_quote(path), dir.file("err"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return path;
}

}  // namespace moe::test
