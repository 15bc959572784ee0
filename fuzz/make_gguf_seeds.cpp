// Writes a few small, valid GGUF files into the directory given as argv[1]: the fuzzer's seeds.
#include <cstdio>
#include <string>
#include <vector>

#include "gguf/writer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_gguf_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  using moe::GgmlType;
  {
    moe::gguf::Writer w;  // metadata only, like a vocabulary file
    w.set_string("general.architecture", "qwen3moe");
    const std::vector<std::string> tokens = {"a", "b", "ab", "<|im_end|>", "\xc4\xa0"};
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    const std::vector<int32_t> types = {1, 1, 1, 3, 1};
    w.set_array_i32("tokenizer.ggml.token_type", types);
    w.set_u32("qwen3moe.block_count", 48);
    w.set_f32("qwen3moe.rope.freq_base", 1e6f);
    w.set_bool("tokenizer.ggml.add_bos_token", false);
    w.write(dir + "/metadata.gguf");
  }
  {
    moe::gguf::Writer w;  // tensors of several types and ranks, non-default alignment
    w.set_alignment(64);
    w.set_string("general.architecture", "qwen3next");
    const std::vector<float> v(32, 0.5f);
    w.add_tensor_f32("output_norm.weight", {32}, v);
    w.add_tensor("blk.0.ffn_up_exps.weight", GgmlType::Q8_0, {32, 2, 2}, [](std::span<std::byte> o) {
      for (size_t i = 0; i < o.size(); ++i) o[i] = std::byte(i);
    });
    w.add_tensor("blk.0.attn_q.weight", GgmlType::Q4_K, {256, 1}, [](std::span<std::byte> o) {
      for (size_t i = 0; i < o.size(); ++i) o[i] = std::byte(i * 3);
    });
    w.write(dir + "/tensors.gguf");
  }
  {
    moe::gguf::Writer w;  // one shard of a split set
    w.set_u16("split.no", 0);
    w.set_u16("split.count", 2);
    w.set_i32("split.tensors.count", 2);
    const std::vector<float> v(8, 1.0f);
    w.add_tensor_f32("token_embd.weight", {8}, v);
    w.write(dir + "/split.gguf");
  }
  return 0;
}
