#pragma once
// What every architecture provides to the engine: its hyperparameters and a forward pass.
// One file per architecture (qwen3.cpp, qwen3moe.cpp) implements it from shared blocks.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/thread_pool.h"
#include "engine/kv_cache.h"
#include "gguf/reader.h"

namespace moe {

using TokenId = int32_t;

struct ModelConfig {
  std::string arch;       // general.architecture
  int n_layer = 0;        // transformer blocks
  int n_embd = 0;         // residual stream width
  int n_head = 0;         // query heads
  int n_head_kv = 0;      // key/value heads (GQA: n_head / n_head_kv queries share one)
  int head_dim = 0;       // per head (q/k/v)
  int n_ff = 0;           // dense FFN width (qwen3)
  int n_expert = 0;       // routed experts (qwen3moe)
  int n_expert_used = 0;  // experts per token
  int n_ff_expert = 0;    // one expert's FFN width
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-6f;
  bool tied_output = false;  // logits use token_embd (no output.weight)
};

// Which logits a forward pass returns.
enum class Logits { Last, All };

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return config_; }

  // Runs `tokens` at positions seq.length() .. seq.length() + n - 1, appending their keys and
  // values to `seq`. Writes n_vocab logits for the last token (Logits::Last) or for every token
  // (Logits::All, row-major). A token's logits do not depend on how the tokens were split
  // into calls, nor on the thread count.
  virtual void forward(std::span<const TokenId> tokens, KvSequence& seq, Logits which, std::span<float> logits,
                       ThreadPool& pool) = 0;

 protected:
  ModelConfig config_;
};

// Builds the model for the file's architecture, checking every tensor against the
// hyperparameters. Unsupported architectures name the supported ones.
std::unique_ptr<Model> load_model(const gguf::Reader& reader);
std::string supported_architectures();

}  // namespace moe
