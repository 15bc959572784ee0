#pragma once
// What every model on one GPU shares: the embedding and output head, the step from pinned
// token ids to pinned logits (run directly, or replayed from a CUDA graph for decode), the
// activation buffers, the KV cache of one sequence, and the blocks the Qwen3 family is built
// from (attention, dense FFN, MoE with an optional shared expert), the GPU twins of
// models/blocks.cpp. A model file (qwen3_gpu.cpp, qwen3next_gpu.cpp) loads its layers and
// says what a layer does. The class is defined in gpu_trunk.cpp (loading, the step, attention,
// the dense FFN), gpu_trunk_moe.cpp (the MoE block) and gpu_trunk_hybrid.cpp (what only the
// hybrid placement uses).
//
// Decode is a chain of small kernels (7-8 a layer after the fusions in docs/cuda.md, some 400
// a token): launched one by one their launch costs would exceed their run time, so a decode
// step replays a CUDA graph of the whole step, captured once and captured again whenever a
// buffer it uses may have moved (after any other call).
#include <array>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "engine/pcie_balance.h"
#include "models/blocks.h"
#include "models/cuda/cpu_experts.h"
#include "models/cuda/expert_stream.h"
#include "models/cuda/gpu_model.h"
#include "models/cuda/registered_model.h"
#include "models/cuda/gpu_weights.h"
#include "models/model.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/gemm.h"
#include "ops/cuda/route_target.h"

namespace moe::cuda {

// A device buffer of T that grows to what the largest call needs.
template <typename T>
struct Scratch {
  DeviceBuffer buffer;
  T* get(size_t n) {
    if (buffer.bytes() < n * sizeof(T)) buffer = DeviceBuffer(n * sizeof(T));
    return buffer.as<T>();
  }
};

struct GpuAttention {
  DeviceBuffer norm;        // the block's input RMSNorm
  GpuMatrix q, k, v, o;     // gated: q's rows hold each head's query, then its output gate
  std::optional<GpuMatrix> qkv;  // q, k and v stacked (one product a decode step), where they share a type
  DeviceBuffer q_norm, k_norm;
  int cache_layer = 0;
};

// A dense SwiGLU FFN: Qwen3's, or Qwen3-Next's shared expert.
struct GpuFfn {
  GpuMatrix gate, up, down;
  std::optional<GpuMatrix> gate_up;  // gate and up stacked (one product), where they share a type
};

struct GpuMoe {
  GpuMatrix router;
  GpuMatrix gate, up, down;          // stacked experts
  std::optional<GpuMatrix> gate_up;  // each expert's gate and up rows paired (one product)
  std::optional<GpuFfn> shared;      // Qwen3-Next: added with weight sigmoid(shared_gate . u)
  DeviceBuffer shared_gate;
  // An f32 router with shared_gate as its last row: one product gives the routing logits and
  // the shared expert's gate (router is then a slice of it, shared_gate empty).
  std::optional<GpuMatrix> router_gate;
  // The shared expert's index among the stacked experts (n_expert) where it was appended to them
  // (then `shared` is empty), else -1.
  int shared_expert = -1;
  int n_expert_used = 0;
  // Hybrid placement: the experts stacked in VRAM (gate_up/gate/up/down) are n_slots of them,
  // expert e in slot slot_of[e] (-1: computed by the CPU, CpuExperts layer `hybrid`). With
  // hybrid < 0 every expert is in VRAM, expert e in slot e.
  int hybrid = -1;
  int n_slots = 0;
  DeviceBuffer slot_of;  // [n_expert + 1] int32, the last entry the shared expert's
  std::optional<StreamedLayer> ram;  // a hybrid layer's experts in RAM (streamed prefill, PCIe experts)
  // With the expert cache (HybridPlacement::expert_cache): the routed slots' experts and last
  // uses, and the layer's step count (expert_of | stamp | tick), which `cache` points into.
  DeviceBuffer cache_state;
  ExpertSlots cache;
};

// The input norm of the block after this one and the first matrix it reads: the block before
// it applies the norm in its last launch where it can (the MoE combine), and the next block's
// normed() takes the result.
struct NextNorm {
  const DeviceBuffer* weights = nullptr;
  const GpuMatrix* first = nullptr;
  const GpuMatrix* input = nullptr;  // the next block's whole input product (stacked), for prefetch_l2()

  // An attention block's: its norm, q first, the stacked q|k|v where there is one.
  static NextNorm of(const GpuAttention& a) { return {&a.norm, &a.q, a.qkv ? &*a.qkv : &a.q}; }
};

class GpuTrunk : public Model {
 public:
  ~GpuTrunk() override;
  GpuTrunk(const GpuTrunk&) = delete;
  GpuTrunk& operator=(const GpuTrunk&) = delete;
  void forward(std::span<const BatchEntry> batch, ThreadPool& pool) override;
  using Model::forward;
  std::string backend() const override { return "CUDA"; }
  double memory_bandwidth_gb_s() const override { return memory_gb_s_; }
  ExpertSplit expert_split() const override;

 protected:
  // Selects the device and makes the stream; the model's constructor then fills config_ and
  // calls load_head() and the load_* helpers below. The placement says how many of each layer's
  // routed experts go to VRAM (the first ones; the CPU computes the rest from the mapped file).
  GpuTrunk(int device, HybridPlacement placement);

  // What a model adds: the layers of a step for n tokens on the residual stream x.
  virtual void layers(int n, float* x) = 0;
  // Recurrent state (Qwen3-Next's delta-nets): zeroed when a sequence starts; such a model
  // cannot go back to an earlier position of its sequence.
  virtual bool has_recurrent_state() const { return false; }
  virtual void reset_recurrent_state() {}

  // Loading (each upload counts into weight_bytes_).
  void load_head(const WeightLoader& load);
  GpuAttention load_attention(const WeightLoader& load, const std::string& block, bool gated, int cache_layer);
  GpuFfn load_ffn(const WeightLoader& load, const std::string& block, const std::string& suffix, int64_t n_ff);
  std::array<WeightView, 3> ffn_views(const WeightLoader& load, const std::string& block, const std::string& suffix,
                                      int64_t n_ff) const;  // gate, up, down
  GpuFfn upload_ffn(const std::array<WeightView, 3>& gate_up_down);
  GpuMoe load_moe(const WeightLoader& load, int layer, int64_t n_ff_shared);
  DeviceBuffer load_vector(const WeightLoader& load, const std::string& name, int64_t n);
  void add_weight_bytes(size_t bytes) { weight_bytes_ += bytes; }
  // After the layers are loaded: the RoPE table, n_kv_layers layers of KV cache, and the
  // streamed prefill's staging buffer where the placement asks for it.
  void finish_loading(const gguf::Reader& reader, const AttentionShape& attention, int n_kv_layers, int device);

  // x += attention(rmsnorm(x)) over the layer's KV cache (gated: Qwen3-Next's output gate).
  // `then`: the matrix the layer reads after the attention (its router), prefetched with the
  // output projection in a decode step.
  void attention(const GpuAttention& w, int n, float* x, const GpuMatrix* then = nullptr);
  // x += ffn(rmsnorm(x, norm)); with `next`, the next block's normed input made in the same
  // launch as the last add where it can.
  void dense_ffn(const GpuFfn& w, const DeviceBuffer& norm, int n, float* x);
  void moe_ffn(const GpuMoe& w, const DeviceBuffer& norm, int n, float* x, NextNorm next = {});
  // The PCIe experts of a decode step: the slots with ids >= 0 (expert ids) computed from the
  // layer's experts in RAM, read over PCIe, into the [gate | up] scratch and expert_out rows.
  void ram_experts(const StreamedLayer& ram, const DeviceActivations& uq, const float* u, int n, int k,
                   const int32_t* ids, float* expert_out);
  // y (+)= ffn(u) for n normed rows u; uq is u quantized (for w's first product where it can).
  void ffn_rows(const GpuFfn& w, const DeviceActivations& uq, const float* u, int n, float* y, bool accumulate);

  // x (n rows of f32, device) quantized for w's kernels; reused while the next call of the
  // same activation type has not overwritten it.
  const DeviceActivations& quantized(const GpuMatrix& w, const float* x, int n);
  // u = rmsnorm(x, w) in f32 and quantized for `m`'s kernels, in one launch (none where the
  // launch before made them: see NextNorm).
  const DeviceActivations& normed(const GpuMatrix& m, const float* x, const DeviceBuffer& w, int n, float* u);
  // Decode: normed()'s u and activations for `first` made by the launch that also runs the
  // router's product into `logits` and routes over them (norm_route.h), where that pays (a
  // router of float rows, at most 256 of them) and the experts read quantized rows; nullopt
  // (nothing launched) otherwise.
  std::optional<DeviceActivations> normed_and_routed(const GpuMatrix& first, const GpuMatrix& router, const float* x,
                                                     const DeviceBuffer& norm, float* u, float* logits,
                                                     const RouteTarget& route);
  // The quantized gated RMSNorm of o (rows of heads of head_width values, gates z, weight w)
  // for `m`'s kernels; o is normed in place where m reads f32.
  const DeviceActivations& gated_normed(const GpuMatrix& m, float* o, const float* z, const DeviceBuffer& w, int n,
                                        int head_width);
  // Where a fused kernel writes the quantized activations of n rows for `m`'s products: the
  // slot's room, whose view becomes the slot's last.
  ActivationBuffer::Target activation_target(const GpuMatrix& m, int n);
  // The quantized swiglu of rows [gate | up] (2 * width values each) for `m`'s kernels.
  const DeviceActivations& swiglu_quantized(const GpuMatrix& m, const float* gu, int rows, int64_t width);
  // Whether n rows through a matrix of this type take the GEMM (else the matvec kernels).
  bool use_gemm(const GpuMatrix& w, int n) const;
  // y (+)= W x: the GEMM for many tokens where it can, else groups of kMaxMatvecTokens tokens.
  void product(const GpuMatrix& w, const DeviceActivations& x, float* y, bool accumulate = false);
  void product(const GpuMatrix& w, const float* x, int n, float* y) { product(w, quantized(w, x, n), y); }
  // Three products of the same normed rows u (quantized: uq) into out, laid out [n][rows of
  // the first] | [n][rows of the second] | [n][rows of the third]: for one token exactly the
  // output of the three stacked into one matrix, which decode then runs as one product.
  void project3(const std::optional<GpuMatrix>& stacked, std::array<const GpuMatrix*, 3> parts,
                const DeviceActivations& uq, const float* u, float* out);
  // The activation `a` again if w reads its type, else x quantized for w.
  const DeviceActivations& reuse_or_quantize(const GpuMatrix& w, const DeviceActivations& a, const float* x, int n);

  // trace() (model.h) of `count` floats in device memory, copied back (only while tracing),
  // named for layer_, the layer the blocks run for (set by the model's layers()).
  void trace_device(const char* what, const float* values, size_t count);
  // Decode: the matrices' rows requested into L2 from here on, for a product a few launches
  // later (ops/cuda/prefetch.h), on prefetch_stream_, forked from the step's stream here and
  // joined at the step's end. `where`: one of the kPrefetch* places, each on unless
  // MOE_L2_PREFETCH (a bitmask of them) says otherwise.
  static constexpr int kPrefetchNextInput = 1, kPrefetchMixerOutput = 2,
                       kPrefetchAll = kPrefetchNextInput | kPrefetchMixerOutput;
  void prefetch(int where, std::initializer_list<const GpuMatrix*> matrices);
  void join_prefetches();
  int l2_prefetch_ = kPrefetchNextInput | kPrefetchMixerOutput;
  cudaStream_t prefetch_stream_ = nullptr;
  cudaEvent_t prefetch_fork_ = nullptr, prefetch_join_ = nullptr;
  bool prefetch_forked_ = false;
  int layer_ = -1;

  cudaStream_t stream_ = nullptr;
  Scratch<float> u_;  // the normed rows of the current block
  Scratch<int32_t> pos_;  // positions of the step's tokens (device)

 private:
  void ensure_cache(int64_t positions);
  // The step on the stream while this thread computes the CPU's experts (hybrid placement).
  void run_hybrid_step(int n, int first_logit, ThreadPool& pool);
  // Everything a step does on the GPU, from the token ids in pinned memory to the logits in
  // pinned memory: run directly, or recorded into the decode graph.
  void enqueue(int n, int first_logit);
  void run_step(int n, int first_logit);

  // Rows the last launch normed ahead (NextNorm): taken by the next normed() call asking for
  // them, dropped by any other.
  struct Prenormed {
    const float* x = nullptr;
    const float* weights = nullptr;
    GgmlType type = GgmlType::F32;
    int n = 0;
    const float* u = nullptr;  // where the f32 normed rows are
  };
  Prenormed prenormed_;
  DeviceBuffer route_counter_;  // for the router products that route in their last block (zero between them)
  DeviceBuffer attention_partials_, attention_counters_;  // decode attention split over blocks (DecodeAttention)

  int device_ = 0;
  HybridPlacement placement_;
  size_t staging_bytes_ = 0;  // the largest hybrid layer's experts (ExpertStream::bytes)
  std::unique_ptr<RegisteredModel> registered_;  // before the stream that copies from it (destroyed after)
  std::unique_ptr<ExpertStream> expert_stream_;
  bool streaming_step_ = false;  // this step's hybrid layers run from the staging buffer
  // PCIe experts: how many of a token's RAM experts the GPU takes now, by their number (a table of
  // device ints the kernels read, so that a captured graph follows it; a token has at most 32
  // slots), and with --pcie-experts auto what moves it.
  static constexpr int kPcieTableSlots = 32;
  void balance_pcie(int n);  // before a hybrid step of n tokens
  DeviceBuffer pcie_table_;
  std::vector<int32_t> pcie_table_value_;  // the table's host copy (a copy's source until it runs)
  std::optional<PcieBalance> pcie_balance_;
  bool last_step_pcie_ = false;  // the step before read experts over PCIe (a decode step)

  // The expert cache: the layer's PCIe experts copied into the slots its publish chose
  // (ram_ids: the experts, experts: their slots), where the VRAM experts' products find them.
  void fill_slots(const GpuMoe& w, const int32_t* ram_ids, const int32_t* slots, int rows);
  // The layer's gate, up and down experts as the copies read (RAM) and write (VRAM) them.
  void cache_rows(const GpuMoe& w, ExpertRows (&out)[kMaxExpertMatrices]) const;
  int cache_layers_ = 0, fixed_layers_ = 0;  // hybrid layers with VRAM experts, with and without the cache
  std::optional<CpuExperts> cpu_experts_;  // made by the first hybrid layer
  DeviceBuffer publish_counter_;           // publish_experts()'s
  size_t weight_bytes_ = 0;
  double memory_gb_s_ = 0;  // the device's peak memory bandwidth (0: not reported)
  bool gemm_ = false;  // the device has the GEMM's tensor-core instructions
  ExpertGroups groups_;
  GpuMatrix token_embd_, output_;
  DeviceBuffer output_norm_;
  AttentionShape attention_;
  DeviceBuffer rope_freq_;  // rope_frequencies(n_rot, rope_base)

  cudaGraphExec_t decode_graph_ = nullptr;
  bool decode_graph_valid_ = false;
  // The last step ran eagerly and was a decode: every buffer a decode step uses has its size,
  // so the next can be recorded (CUDA refuses allocations inside a capture). After any other
  // step (a prefill may take paths a decode does not, and size other buffers), the first
  // decode runs eagerly again.
  bool decode_sized_ = false;
  PinnedBuffer ids_host_, pos_host_, logits_host_;
  PinnedBuffer forced_host_;  // a routing source's experts for the step (Model::set_routing_source)
  // Per activation type (F32, Q8_0, Q8_K): its buffer and the view last written there.
  struct ActivationSlot {
    ActivationBuffer buffer;
    DeviceActivations last;
  };
  ActivationSlot f32_, q8_0_, q8_k_;
  ActivationSlot& slot(GgmlType at) { return at == GgmlType::Q8_K ? q8_k_ : at == GgmlType::Q8_0 ? q8_0_ : f32_; }
  Scratch<float> x_, qkv_, gate_, mixed_, router_, g_, up_, expert_out_, shared_out_, stacked_out_, shared_logit_, logits_;
  Scratch<int32_t> ids_, experts_, ram_ids_;
  Scratch<float> weights_;
  std::vector<DeviceBuffer> k_cache_, v_cache_;
  KvType cache_type_ = KvType::F16;  // the sequence's cache type (f16, q8_0 or q4_0)
  int64_t cache_positions_ = 0;
  const SequenceState* owner_ = nullptr;  // the sequence the cache (and recurrent state) holds
  int64_t state_length_ = 0;              // positions the recurrent state has consumed
};

}  // namespace moe::cuda
