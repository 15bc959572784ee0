// Qwen3 and Qwen3-MoE on one GPU: the CPU model files' forward pass (qwen3_family.cpp,
// qwen3moe.cpp, blocks.cpp) step for step on device buffers, with the kernels of ops/cuda.
//   x = embed(tokens)
//   per layer: x += attention(rmsnorm(x));  x += ffn(rmsnorm(x))   (dense or routed experts)
//   logits = output(rmsnorm(x))
// The KV cache lives in VRAM (f16) and belongs to one sequence at a time; the engine's
// SequenceState keeps the length. Decode reads every weight once a token; prefill runs the
// products in groups of up to 8 tokens (a GEMM path for prefill is still to come).
// A decode step is some 27 kernels a layer: launched one by one, their launch costs would
// exceed their run time, so decode steps replay a CUDA graph of the whole step, captured
// once and captured again whenever a buffer it uses may have moved (after any other call).
#include <array>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/log.h"
#include "core/units.h"
#include "models/cuda/gpu_model.h"
#include "models/cuda/gpu_weights.h"
#include "models/hparams.h"
#include "models/trunk.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/matvec.h"
#include "ops/cuda/ops.h"

namespace moe::cuda {
namespace {

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
  GpuMatrix q, k, v, o;
  std::optional<GpuMatrix> qkv;  // q, k and v stacked (one product a decode step), where they share a type
  DeviceBuffer q_norm, k_norm;
};

struct GpuFfn {
  GpuMatrix router;               // MoE only
  GpuMatrix gate, up, down;       // dense matrices, or stacked experts
  std::optional<GpuMatrix> gate_up;  // gate and up together (one product), where they share a type
};

class Qwen3Gpu final : public Model {
 public:
  Qwen3Gpu(const gguf::Reader& reader, int device);
  ~Qwen3Gpu() override;
  Qwen3Gpu(const Qwen3Gpu&) = delete;
  Qwen3Gpu& operator=(const Qwen3Gpu&) = delete;
  void forward(std::span<const BatchEntry> batch, ThreadPool& pool) override;
  using Model::forward;
  std::string backend() const override { return "CUDA"; }

 private:
  // x (n rows of f32, device) quantized for w's kernels; reused while the next call of the
  // same activation type has not overwritten it.
  const DeviceActivations& quantized(const GpuMatrix& w, const float* x, int n);
  void product(const GpuMatrix& w, const DeviceActivations& x, float* y) { product(w, x, y, false); }
  void product(const GpuMatrix& w, const float* x, int n, float* y) { product(w, quantized(w, x, n), y, false); }
  // x += attention(rmsnorm(x)) and x += ffn(rmsnorm(x)) for layer il, n tokens.
  void attention(int il, int n, float* x);
  void ffn(int il, int n, float* x);
  // The quantized swiglu of rows [gate | up] (2 * width values each) for `m`'s kernels.
  const DeviceActivations& swiglu_quantized(const GpuMatrix& m, const float* gu, int rows, int64_t width);
  // u = rmsnorm(x, w) in f32 and quantized for `m`'s kernels, in one launch.
  const DeviceActivations& normed(const GpuMatrix& m, const float* x, const DeviceBuffer& w, int n, float* u);
  // y (+)= W x for quantized x.
  void product(const GpuMatrix& w, const DeviceActivations& x, float* y, bool accumulate);
  void ensure_cache(int64_t positions);
  // Everything a step does on the GPU, from the token ids in pinned memory to the logits in
  // pinned memory: run directly, or recorded into the decode graph.
  void enqueue(int n, int first_logit);

  bool moe_ = false;
  int n_expert_used_ = 0;
  size_t weight_bytes_ = 0;
  GpuMatrix token_embd_, output_;
  DeviceBuffer rope_freq_;  // rope_frequencies(head_dim, rope_base)
  DeviceBuffer output_norm_;
  std::vector<DeviceBuffer> attn_norm_, ffn_norm_;
  std::vector<GpuAttention> attn_;
  std::vector<GpuFfn> ffn_;

  cudaStream_t stream_ = nullptr;
  cudaGraphExec_t decode_graph_ = nullptr;
  bool decode_graph_valid_ = false, warm_ = false;  // warm: every buffer sized by an earlier call
  PinnedBuffer ids_host_, pos_host_, logits_host_;
  // Per activation type (F32, Q8_0, Q8_K): its buffer and the view last written there.
  struct ActivationSlot {
    ActivationBuffer buffer;
    DeviceActivations last;
  };
  ActivationSlot f32_, q8_0_, q8_k_;
  ActivationSlot& slot(GgmlType at) { return at == GgmlType::Q8_K ? q8_k_ : at == GgmlType::Q8_0 ? q8_0_ : f32_; }
  Scratch<float> x_, u_, qkv_, mixed_, router_, g_, up_, expert_out_, logits_;
  Scratch<int32_t> ids_, pos_, experts_;
  Scratch<float> weights_;
  std::vector<DeviceBuffer> k_cache_, v_cache_;
  int64_t cache_positions_ = 0;
  const SequenceState* owner_ = nullptr;  // the sequence the cache holds
};

Qwen3Gpu::~Qwen3Gpu() {
  if (decode_graph_) cudaGraphExecDestroy(decode_graph_);
  if (stream_) cudaStreamDestroy(stream_);
}

Qwen3Gpu::Qwen3Gpu(const gguf::Reader& reader, int device) : Model(ModelOptions{.repack = false}) {
  MOE_CUDA_CHECK(cudaSetDevice(device));
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  config_ = read_transformer_config(reader);
  ModelConfig& c = config_;
  moe_ = reader.architecture() == "qwen3moe";
  if (moe_) {
    read_qwen3moe_experts(reader, c);
    n_expert_used_ = c.n_expert_used;
  } else {
    c.n_ff = int(reader.metadata().get_uint("qwen3.feed_forward_length"));
  }
  const WeightLoader load(reader);
  const int64_t d = c.n_embd, q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  size_t& total = weight_bytes_;
  token_embd_ = upload(load.matrix("token_embd.weight", c.n_vocab, d), total);
  output_ = upload(load.matrix(c.tied_output ? "token_embd.weight" : "output.weight", c.n_vocab, d), total);
  output_norm_ = upload(load.vector("output_norm.weight", d), total);
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    attn_norm_.push_back(upload(load.vector(b + "attn_norm.weight", d), total));
    ffn_norm_.push_back(upload(load.vector(b + "ffn_norm.weight", d), total));
    GpuAttention a;
    const std::array qkv{load.matrix(b + "attn_q.weight", q_dim, d), load.matrix(b + "attn_k.weight", kv_dim, d),
                         load.matrix(b + "attn_v.weight", kv_dim, d)};
    a.qkv = upload_stacked(qkv, total);
    if (a.qkv) {
      a.q = slice(*a.qkv, 0, q_dim), a.k = slice(*a.qkv, q_dim, kv_dim), a.v = slice(*a.qkv, q_dim + kv_dim, kv_dim);
    } else {
      a.q = upload(qkv[0], total), a.k = upload(qkv[1], total), a.v = upload(qkv[2], total);
    }
    a.o = upload(load.matrix(b + "attn_output.weight", d, q_dim), total);
    a.q_norm = upload(load.vector(b + "attn_q_norm.weight", c.head_dim), total);
    a.k_norm = upload(load.vector(b + "attn_k_norm.weight", c.head_dim), total);
    attn_.push_back(std::move(a));
    GpuFfn f;
    if (moe_) {
      const int64_t ff = c.n_ff_expert;
      f.router = upload(load.matrix(b + "ffn_gate_inp.weight", c.n_expert, d), total);
      const ExpertWeights gate = load.experts(b + "ffn_gate_exps.weight", ff, d, c.n_expert);
      const ExpertWeights up = load.experts(b + "ffn_up_exps.weight", ff, d, c.n_expert);
      f.gate_up = upload_paired(gate, up, total);
      if (!f.gate_up) f.gate = upload(gate, total), f.up = upload(up, total);
      f.down = upload(load.experts(b + "ffn_down_exps.weight", d, ff, c.n_expert), total);
    } else {
      const std::array gate_up{load.matrix(b + "ffn_gate.weight", c.n_ff, d), load.matrix(b + "ffn_up.weight", c.n_ff, d)};
      f.gate_up = upload_stacked(gate_up, total);
      if (!f.gate_up) f.gate = upload(gate_up[0], total), f.up = upload(gate_up[1], total);
      f.down = upload(load.matrix(b + "ffn_down.weight", d, c.n_ff), total);
    }
    ffn_.push_back(std::move(f));
  }
  const std::vector<double> freq = rope_frequencies(c.head_dim, c.rope_base);
  rope_freq_ = DeviceBuffer(freq.size() * sizeof(double));
  MOE_CUDA_CHECK(cudaMemcpy(rope_freq_.get(), freq.data(), rope_freq_.bytes(), cudaMemcpyHostToDevice));
  c.n_cache_layers = 0;  // the KV cache is in VRAM, not in the engine's KvCache
  k_cache_.resize(size_t(c.n_layer));
  v_cache_.resize(size_t(c.n_layer));
  spdlog::info("gpu: {} of weights on device {}", format_bytes(weight_bytes_), device);
}

const DeviceActivations& Qwen3Gpu::quantized(const GpuMatrix& w, const float* x, int n) {
  const GgmlType at = vec_dot_type(w.type);
  ActivationSlot& s = slot(at);
  return s.last = s.buffer.quantize(at, x, n, w.cols, stream_);
}

const DeviceActivations& Qwen3Gpu::normed(const GpuMatrix& m, const float* x, const DeviceBuffer& w, int n, float* u) {
  const GgmlType at = vec_dot_type(m.type);
  if (at == GgmlType::F32) {  // float weights read the normed rows as they are
    MOE_CUDA_CHECK(rms_norm(x, w.as<float>(), config_.rms_eps, n, int(m.cols), u, stream_));
    return quantized(m, u, n);
  }
  ActivationSlot& s = slot(at);
  return s.last = s.buffer.quantize_normed(at, x, w.as<float>(), config_.rms_eps, n, m.cols, u, stream_);
}

const DeviceActivations& Qwen3Gpu::swiglu_quantized(const GpuMatrix& m, const float* gu, int rows, int64_t width) {
  const GgmlType at = vec_dot_type(m.type);
  if (at == GgmlType::F32 || width > ActivationBuffer::kMaxFusedWidth) {
    float* h = g_.get(size_t(rows) * size_t(width));
    MOE_CUDA_CHECK(swiglu_pairs(gu, rows, width, h, stream_));
    return quantized(m, h, rows);
  }
  ActivationSlot& s = slot(at);
  return s.last = s.buffer.quantize_swiglu(at, gu, rows, width, stream_);
}

// Groups of kMaxMatvecTokens tokens: each group reads the weights once.
void Qwen3Gpu::product(const GpuMatrix& w, const DeviceActivations& all, float* y, bool accumulate) {
  const int n = all.n_tok;
  for (int t0 = 0; t0 < n; t0 += kMaxMatvecTokens) {
    const DeviceActivations part = all.rows(t0, std::min(kMaxMatvecTokens, n - t0));
    matvec(w.type, w.get(), w.row_stride, w.rows, part, y + int64_t(t0) * w.rows, stream_, accumulate);
  }
}

void Qwen3Gpu::ensure_cache(int64_t positions) {
  if (positions <= cache_positions_) return;
  int64_t capacity = std::max<int64_t>(cache_positions_, 256);
  while (capacity < positions) capacity *= 2;
  const size_t row = size_t(config_.n_head_kv) * config_.head_dim * sizeof(__half);
  for (size_t il = 0; il < k_cache_.size(); ++il) {
    for (auto* cache : {&k_cache_[il], &v_cache_[il]}) {
      DeviceBuffer grown(row * size_t(capacity));
      if (cache_positions_ > 0) {
        MOE_CUDA_CHECK(cudaMemcpyAsync(grown.get(), cache->get(), row * size_t(cache_positions_),
                                       cudaMemcpyDeviceToDevice, stream_));
      }
      *cache = std::move(grown);
    }
  }
  cache_positions_ = capacity;
  decode_graph_valid_ = false;
}

void Qwen3Gpu::attention(int il, int n, float* x) {
  const ModelConfig& c = config_;
  const GpuAttention& w = attn_[size_t(il)];
  const int hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd;
  float* u = u_.get(size_t(n) * c.n_embd);
  // q [n][q_dim], then k and v [n][kv_dim]: for one token exactly the stacked product's output.
  float* q = qkv_.get(size_t(n) * (q_dim + 2 * kv_dim));
  float* k = q + size_t(n) * q_dim;
  float* v = k + size_t(n) * kv_dim;
  // q, k and v read u quantized once where their formats share an activation type.
  const DeviceActivations& uq = normed(w.q, x, attn_norm_[size_t(il)], n, u);
  if (w.qkv && n == 1) {
    product(*w.qkv, uq, q);
  } else {
    product(w.q, uq, q);
    product(w.k, vec_dot_type(w.k.type) == uq.type ? uq : quantized(w.k, u, n), k);
    product(w.v, vec_dot_type(w.v.type) == uq.type ? uq : quantized(w.v, u, n), v);
  }
  const int32_t* pos = pos_.get(size_t(n));
  auto* kc = k_cache_[size_t(il)].as<__half>();
  auto* vc = v_cache_[size_t(il)].as<__half>();
  MOE_CUDA_CHECK(qk_norm_rope_store(q, k, v, w.q_norm.as<float>(), w.k_norm.as<float>(), c.rms_eps, pos, n, c.n_head,
                                    c.n_head_kv, hd, hd, rope_freq_.as<double>(), kc, vc, stream_));
  float* mixed = mixed_.get(size_t(n) * q_dim);
  MOE_CUDA_CHECK(attend(q, kc, vc, pos, n, c.n_head, c.n_head_kv, hd, 1.0f / std::sqrt(float(hd)), mixed, stream_));
  product(w.o, quantized(w.o, mixed, n), x, true);
}

void Qwen3Gpu::ffn(int il, int n, float* x) {
  const ModelConfig& c = config_;
  const GpuFfn& w = ffn_[size_t(il)];
  float* u = u_.get(size_t(n) * c.n_embd);
  const DeviceActivations& uq = normed(w.gate_up ? *w.gate_up : w.gate, x, ffn_norm_[size_t(il)], n, u);
  if (!moe_) {
    if (w.gate_up) {
      float* gu = up_.get(size_t(n) * 2 * c.n_ff);
      product(*w.gate_up, uq, gu);
      product(w.down, swiglu_quantized(w.down, gu, n, c.n_ff), x, true);
    } else {
      float* g = g_.get(size_t(n) * c.n_ff);
      float* up = up_.get(size_t(n) * c.n_ff);
      product(w.gate, uq, g);
      product(w.up, vec_dot_type(w.up.type) == uq.type ? uq : quantized(w.up, u, n), up);
      MOE_CUDA_CHECK(swiglu(g, up, int64_t(n) * c.n_ff, g, stream_));
      product(w.down, quantized(w.down, g, n), x, true);
    }
    return;
  }
  // Routing, then every (token, rank) row through its expert: one launch per matrix, each
  // token's normed row read once per expert it goes to.
  const int k = n_expert_used_, rows = n * k;
  const int64_t d = c.n_embd, ff = c.n_ff_expert;
  const DeviceActivations uq_experts = uq;  // the router's product below may quantize again
  float* logits = router_.get(size_t(n) * c.n_expert);
  product(w.router, u, n, logits);
  int32_t* experts = experts_.get(size_t(rows));
  float* weights = weights_.get(size_t(rows));
  MOE_CUDA_CHECK(route_top_k(logits, n, c.n_expert, k, true, experts, weights, stream_));
  auto experts_product = [&](const GpuMatrix& m, const DeviceActivations& a, float* y, int row_div) {
    matvec_experts(m.type, m.get(), m.expert_stride, m.row_stride, m.rows, a, experts, y, stream_, row_div);
  };
  float* expert_out = expert_out_.get(size_t(rows) * d);
  if (w.gate_up) {  // each expert's gate and up rows in one product, side by side
    float* gu = up_.get(size_t(rows) * 2 * ff);
    experts_product(*w.gate_up, uq_experts, gu, k);
    experts_product(w.down, swiglu_quantized(w.down, gu, rows, ff), expert_out, 1);
  } else {
    float* g = g_.get(size_t(rows) * ff);
    float* up = up_.get(size_t(rows) * ff);
    experts_product(w.gate, uq_experts, g, k);
    experts_product(w.up, vec_dot_type(w.up.type) == uq_experts.type ? uq_experts : quantized(w.up, u, n), up, k);
    MOE_CUDA_CHECK(swiglu(g, up, int64_t(rows) * ff, g, stream_));
    experts_product(w.down, quantized(w.down, g, rows), expert_out, 1);
  }
  MOE_CUDA_CHECK(combine_experts(expert_out, weights, n, k, d, x, stream_, true));
}

void Qwen3Gpu::enqueue(int n, int first_logit) {
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd;
  int32_t* ids = ids_.get(size_t(n));
  MOE_CUDA_CHECK(cudaMemcpyAsync(ids, ids_host_.as<int32_t>(), size_t(n) * 4, cudaMemcpyHostToDevice, stream_));
  MOE_CUDA_CHECK(cudaMemcpyAsync(pos_.get(size_t(n)), pos_host_.as<int32_t>(), size_t(n) * 4, cudaMemcpyHostToDevice,
                                 stream_));
  float* x = x_.get(size_t(n) * d);
  float* u = u_.get(size_t(n) * d);
  MOE_CUDA_CHECK(get_rows(token_embd_.type, token_embd_.get(), token_embd_.row_stride, d, ids, n, x, stream_));
  for (int il = 0; il < c.n_layer; ++il) {
    attention(il, n, x);
    ffn(il, n, x);
  }
  const int count = n - first_logit;
  MOE_CUDA_CHECK(rms_norm(x + int64_t(first_logit) * d, output_norm_.as<float>(), c.rms_eps, count, int(d), u, stream_));
  float* logits = logits_.get(size_t(count) * c.n_vocab);
  product(output_, u, count, logits);
  MOE_CUDA_CHECK(cudaMemcpyAsync(logits_host_.as<float>(), logits, size_t(count) * c.n_vocab * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream_));
}

void Qwen3Gpu::forward(std::span<const BatchEntry> batch, ThreadPool&) {
  const ModelConfig& c = config_;
  const int n = check_batch(batch, c.n_vocab);
  if (batch.size() != 1) fail("gpu: one sequence per forward pass for now (got {})", batch.size());
  const BatchEntry& entry = batch.front();
  const int64_t pos0 = entry.seq->length();
  if (owner_ != entry.seq && pos0 != 0) {
    fail("gpu: the KV cache holds another sequence; a second sequence must start at position 0");
  }
  grow_sequences(batch);
  owner_ = entry.seq;
  ensure_cache(pos0 + n);

  const int first_logit = entry.which == Logits::All ? 0 : n - 1, count = n - first_logit;
  if (ids_host_.bytes() < size_t(n) * 4) {
    ids_host_ = PinnedBuffer(size_t(n) * 4);
    pos_host_ = PinnedBuffer(size_t(n) * 4);
  }
  if (logits_host_.bytes() < size_t(count) * c.n_vocab * sizeof(float)) {
    logits_host_ = PinnedBuffer(size_t(count) * c.n_vocab * sizeof(float));
    decode_graph_valid_ = false;
  }
  for (int t = 0; t < n; ++t) {
    ids_host_.as<int32_t>()[t] = entry.tokens[size_t(t)];
    pos_host_.as<int32_t>()[t] = int32_t(pos0 + t);
  }
  const bool decode = n == 1;
  if (decode && decode_graph_valid_) {
    MOE_CUDA_CHECK(cudaGraphLaunch(decode_graph_, stream_));
  } else if (decode && warm_) {
    // Every buffer already has its size: record the step, keep the graph, run it.
    cudaGraph_t graph = nullptr;
    MOE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue(1, 0);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    MOE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    if (decode_graph_) cudaGraphExecDestroy(decode_graph_);
    decode_graph_ = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiate(&decode_graph_, graph, 0);
    cudaGraphDestroy(graph);
    MOE_CUDA_CHECK(instantiated);
    decode_graph_valid_ = true;
    MOE_CUDA_CHECK(cudaGraphLaunch(decode_graph_, stream_));
  } else {
    enqueue(n, first_logit);
    warm_ = true;
    decode_graph_valid_ = false;  // a larger call may have moved buffers the graph uses
  }
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::copy_n(logits_host_.as<float>(), size_t(count) * c.n_vocab, entry.logits.data());
}

}  // namespace

bool gpu_supports(const gguf::Reader& reader, std::string* why) {
  const std::string_view arch = reader.architecture();
  if (arch == "qwen3" || arch == "qwen3moe") return true;
  if (why) *why = fmt::format("the GPU backend does not run '{}' yet (qwen3, qwen3moe)", arch);
  return false;
}

std::unique_ptr<Model> load_gpu_model(const gguf::Reader& reader, int device) {
  std::string why;
  if (!gpu_supports(reader, &why)) fail("{}: {}", reader.path(), why);
  size_t free_bytes = 0, total_bytes = 0;
  MOE_CUDA_CHECK(cudaSetDevice(device));
  MOE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const uint64_t need = reader.tensor_bytes();
  if (need > free_bytes) {
    fail("{}: the weights need {} of VRAM, device {} has {} free; run on the CPU (--device cpu) or, once the hybrid "
         "placement lands, give a --vram-budget",
         reader.path(), format_bytes(need), device, format_bytes(free_bytes));
  }
  return std::make_unique<Qwen3Gpu>(reader, device);
}

}  // namespace moe::cuda
