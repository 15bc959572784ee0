#pragma once
// What every architecture provides to the engine: its hyperparameters and a forward pass.
// One file per architecture (qwen3.cpp, qwen3moe.cpp) implements it from shared blocks.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "engine/kv_cache.h"
#include "gguf/reader.h"
#include "models/weights.h"

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
  int n_cache_layers = 0;    // layers with a KV cache: all of them, or Qwen3-Next's attention layers
  size_t recurrent_floats = 0;  // a sequence's recurrent state (Qwen3-Next's delta-net layers)
};

// A KV cache for this model's attention layers, room for max_tokens positions in all.
inline KvCache make_kv_cache(const ModelConfig& c, GgmlType type, int64_t max_tokens) {
  return KvCache(c.n_cache_layers, int64_t(c.n_head_kv) * c.head_dim, type, max_tokens);
}

// How a model is loaded.
struct ModelOptions {
  // Repack matrices into the faster interleaved layouts this CPU has kernels for (Q4_K with
  // AVX-512 VNNI). Off: every matrix is used in place in the mapped file.
  bool repack = true;
};

// Which logits a forward pass returns.
enum class Logits { Last, All };

// One sequence's part of a batched forward pass.
struct BatchEntry {
  std::span<const TokenId> tokens;  // run at positions seq->length() .. seq->length() + n - 1
  SequenceState* seq = nullptr;        // gets their keys and values; at most once per batch
  Logits which = Logits::Last;
  std::span<float> logits;          // n_vocab floats (Last) or n * n_vocab, row-major (All)
};

// Benchmarks: routing chosen outside the model (engine/routing_locality.h gives routing of a
// stated locality) in place of the router's choice of experts; the router's weights stay, in
// rank order. route() fills experts[t * k + r] (k = n_expert_used, distinct in a token) for the
// n tokens of a forward pass at MoE layer `layer`; it is called once per layer and pass, in
// layer order, before or during the pass.
class RoutingSource {
 public:
  virtual ~RoutingSource() = default;
  virtual void route(int layer, int n, std::span<int32_t> experts) = 0;
};

class Model {
 public:
  explicit Model(const ModelOptions& options) : options_(options) {}
  virtual ~Model() = default;
  const ModelConfig& config() const { return config_; }
  // Where forward() runs, as llama-bench names backends: "CPU", "CUDA".
  virtual std::string backend() const { return "CPU"; }
  // The peak bandwidth of the memory the weights stream from, GB/s, where the backend knows it
  // (a GPU's HBM); 0 where it does not (the CPU engine: measure it, bench --mem-bw).
  virtual double memory_bandwidth_gb_s() const { return 0.0; }
  // A hybrid model's split of the routed experts between VRAM and the CPU, over the steps so
  // far (all zero for other models).
  struct ExpertSplit {
    uint64_t routed_slots = 0;  // (token, routed expert) pairs in MoE layers with experts in RAM
    uint64_t cpu_slots = 0;     // of them, computed by the CPU
    uint64_t pcie_slots = 0;    // of them, computed by the GPU reading the expert from RAM over PCIe
    double cpu_wait_s = 0;      // the CPU waiting for the GPU to route
    double cpu_compute_s = 0;   // the CPU computing its experts
    // The GPU's side of the hybrid layers, from its own clock (decode and other steps the CPU
    // served): its experts (routing handed over to its add beginning), its waits for the CPU's
    // sum, and its serial part (the sum seen to the next hybrid layer's routing handed over:
    // combine, norms, the next token mixer and router).
    double gpu_experts_s = 0, gpu_wait_s = 0, gpu_serial_s = 0;
  };
  virtual ExpertSplit expert_split() const { return {}; }
  // What loading repacked (empty with ModelOptions::repack off or nothing to repack).
  const RepackedWeights& repacked() const { return repacked_; }

  // Runs the tokens of every entry in one pass (one read of the weights for the whole
  // batch). A token's logits do not depend on the other sequences in the batch, on how a
  // sequence's tokens were split into calls, nor on the thread count.
  virtual void forward(std::span<const BatchEntry> batch, ThreadPool& pool) = 0;

  // Intermediate tensors, for comparing engines op by op (engine/op_compare.h): while a tracer
  // is set, forward() hands it each checkpoint's values ([n_tok][width], on the host) under a
  // name every backend uses the same way:
  //   embd                the token embeddings
  //   blk.N.attn_in       layer N's normed input to its token mixer (attention or delta-net)
  //   blk.N.attn_out      the residual stream after the mixer
  //   blk.N.ffn_in        the normed input to the FFN (dense or experts)
  //   blk.N.ffn_out       the residual stream after the FFN
  // A GPU engine copies each one back and waits for it: tracing is for checking, not speed.
  using Tracer = std::function<void(const std::string& name, std::span<const float> values)>;
  void set_tracer(Tracer tracer) { tracer_ = std::move(tracer); }
  // Routing from `source` (not owned; null: the router's) for the forward passes that follow.
  void set_routing_source(RoutingSource* source) { routing_ = source; }

  // One sequence: `tokens` appended to `seq`, logits of the last token or of all.
  void forward(std::span<const TokenId> tokens, SequenceState& seq, Logits which, std::span<float> logits,
               ThreadPool& pool) {
    const BatchEntry entry{tokens, &seq, which, logits};
    forward(std::span(&entry, 1), pool);
  }

 protected:
  RepackedWeights* repack_target() { return options_.repack ? &repacked_ : nullptr; }
  bool tracing() const { return bool(tracer_); }
  RoutingSource* routing_source() const { return routing_; }
  // The source's experts for layer `layer` and n tokens (k a token), or empty without one.
  std::vector<int32_t> forced_routing(int layer, int n, int k) const;
  // Hands a checkpoint to the tracer, if there is one; layer < 0 for the names without "blk.N.".
  void trace(int layer, const char* what, std::span<const float> values) const;

  ModelConfig config_;

 private:
  ModelOptions options_;
  RepackedWeights repacked_;
  Tracer tracer_;
  RoutingSource* routing_ = nullptr;
};

// Builds the model for the file's architecture, checking every tensor against the
// hyperparameters. Unsupported architectures name the supported ones.
std::unique_ptr<Model> load_model(const gguf::Reader& reader, const ModelOptions& options = {});
std::string supported_architectures();

}  // namespace moe
