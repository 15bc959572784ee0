// Tokenizer speed: vocabulary load time, and encode/decode throughput on long multilingual
// text (MB/s of UTF-8 input). Run: build/bench/bench_tokenizer (needs the test vocabularies,
// which the build unpacks).
#include <benchmark/benchmark.h>

#include <string>

#include "gguf/reader.h"
#include "tokenizer/multilingual_text.h"
#include "tokenizer/tokenizer.h"

namespace {

using moe::tokenizer::Tokenizer;

std::string vocab_path(const std::string& name) {
  return std::string(MOE_TEST_DATA_DIR) + "/vocab/ggml-vocab-" + name + ".gguf";
}

const char* const kVocabs[] = {"qwen2", "llama-bpe"};

void BM_LoadVocab(benchmark::State& state) {
  const std::string path = vocab_path(kVocabs[state.range(0)]);
  for (auto _ : state) {
    moe::gguf::Reader reader(path);
    benchmark::DoNotOptimize(Tokenizer::from_gguf(reader.metadata()));
  }
  state.SetLabel(kVocabs[state.range(0)]);
}
BENCHMARK(BM_LoadVocab)->DenseRange(0, 1)->Unit(benchmark::kMillisecond);

void BM_Encode(benchmark::State& state) {
  moe::gguf::Reader reader(vocab_path(kVocabs[state.range(0)]));
  const Tokenizer tok = Tokenizer::from_gguf(reader.metadata());
  const std::string text = moe::tokenizer::test::multilingual_text(1 << 20);
  size_t tokens = 0;
  for (auto _ : state) tokens = tok.encode(text, {.add_special = false}).size();
  state.SetBytesProcessed(int64_t(state.iterations() * text.size()));
  state.counters["tokens/s"] = benchmark::Counter(double(tokens) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(kVocabs[state.range(0)]);
}
BENCHMARK(BM_Encode)->DenseRange(0, 1)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& state) {
  moe::gguf::Reader reader(vocab_path(kVocabs[state.range(0)]));
  const Tokenizer tok = Tokenizer::from_gguf(reader.metadata());
  const std::string text = moe::tokenizer::test::multilingual_text(1 << 20);
  const auto ids = tok.encode(text, {.add_special = false});
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids));
  state.SetBytesProcessed(int64_t(state.iterations() * text.size()));
  state.SetLabel(kVocabs[state.range(0)]);
}
BENCHMARK(BM_Decode)->DenseRange(0, 1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
