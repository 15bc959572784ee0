#include "models/cuda/gpu_trunk.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <utility>

#include "core/error.h"
#include "core/log.h"
#include "core/units.h"
#include "models/trunk.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/delta_net.h"
#include "ops/cuda/device.h"
#include "ops/cuda/gemm.h"
#include "ops/cuda/handoff.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"
#include "ops/cuda/ops.h"
#include "ops/cuda/prefetch.h"

namespace moe::cuda {
namespace {

// The GPU keeps the cache in the sequence's type, the bytes the CPU engine's cache holds.
std::optional<KvType> gpu_kv_type(GgmlType type) {
  switch (type) {
    case GgmlType::F16: return KvType::F16;
    case GgmlType::Q8_0: return KvType::Q8_0;
    case GgmlType::Q4_0: return KvType::Q4_0;
    default: return std::nullopt;
  }
}

}  // namespace

GpuTrunk::GpuTrunk(int device, HybridPlacement placement)
    : Model(ModelOptions{.repack = false}), device_(device), placement_(std::move(placement)) {
  MOE_CUDA_CHECK(cudaSetDevice(device));
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  gemm_ = device_has_gemm();
  route_counter_ = DeviceBuffer(sizeof(unsigned));
  MOE_CUDA_CHECK(cudaMemset(route_counter_.get(), 0, sizeof(unsigned)));
  publish_counter_ = DeviceBuffer(sizeof(unsigned));
  MOE_CUDA_CHECK(cudaMemset(publish_counter_.get(), 0, sizeof(unsigned)));
  memory_gb_s_ = peak_memory_gb_s(device);
  if (const char* env = std::getenv("MOE_L2_PREFETCH")) {  // experiments: a bitmask of the kPrefetch* places
    char* end = nullptr;
    const long bits = std::strtol(env, &end, 0);
    if (end == env || *end != '\0' || bits < 0 || bits > kPrefetchAll) {
      spdlog::warn("gpu: MOE_L2_PREFETCH={} is not a bitmask of 0 to {}: the default ({}) stays", env, kPrefetchAll,
                   l2_prefetch_);
    } else {
      l2_prefetch_ = int(bits);
    }
  }
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&prefetch_stream_, cudaStreamNonBlocking));
  MOE_CUDA_CHECK(cudaEventCreateWithFlags(&prefetch_fork_, cudaEventDisableTiming));
  MOE_CUDA_CHECK(cudaEventCreateWithFlags(&prefetch_join_, cudaEventDisableTiming));
}

GpuTrunk::~GpuTrunk() {
  if (decode_graph_) cudaGraphExecDestroy(decode_graph_);
  if (prefetch_fork_) cudaEventDestroy(prefetch_fork_);
  if (prefetch_join_) cudaEventDestroy(prefetch_join_);
  if (prefetch_stream_) cudaStreamDestroy(prefetch_stream_);
  if (stream_) cudaStreamDestroy(stream_);
}

Model::ExpertSplit GpuTrunk::expert_split() const { return cpu_experts_ ? cpu_experts_->stats() : ExpertSplit{}; }

// ---- loading ----

void GpuTrunk::load_head(const WeightLoader& load) {
  const ModelConfig& c = config_;
  token_embd_ = upload(load.matrix("token_embd.weight", c.n_vocab, c.n_embd), weight_bytes_, true);
  output_ = upload(load.matrix(c.tied_output ? "token_embd.weight" : "output.weight", c.n_vocab, c.n_embd),
                   weight_bytes_);
  output_norm_ = load_vector(load, "output_norm.weight", c.n_embd);
}

DeviceBuffer GpuTrunk::load_vector(const WeightLoader& load, const std::string& name, int64_t n) {
  return upload(load.vector(name, n), weight_bytes_);
}

GpuAttention GpuTrunk::load_attention(const WeightLoader& load, const std::string& b, bool gated, int cache_layer) {
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd, q_dim = int64_t(c.n_head) * c.head_dim, kv_dim = int64_t(c.n_head_kv) * c.head_dim;
  const int64_t q_rows = gated ? 2 * q_dim : q_dim;
  size_t& total = weight_bytes_;
  GpuAttention a;
  a.norm = load_vector(load, b + "attn_norm.weight", d);
  const std::array qkv{load.matrix(b + "attn_q.weight", q_rows, d), load.matrix(b + "attn_k.weight", kv_dim, d),
                       load.matrix(b + "attn_v.weight", kv_dim, d)};
  a.qkv = upload_stacked(qkv, total);
  if (a.qkv) {
    a.q = slice(*a.qkv, 0, q_rows), a.k = slice(*a.qkv, q_rows, kv_dim), a.v = slice(*a.qkv, q_rows + kv_dim, kv_dim);
  } else {
    a.q = upload(qkv[0], total), a.k = upload(qkv[1], total), a.v = upload(qkv[2], total);
  }
  a.o = upload(load.matrix(b + "attn_output.weight", d, q_dim), total);
  a.q_norm = load_vector(load, b + "attn_q_norm.weight", c.head_dim);
  a.k_norm = load_vector(load, b + "attn_k_norm.weight", c.head_dim);
  a.cache_layer = cache_layer;
  return a;
}

std::array<WeightView, 3> GpuTrunk::ffn_views(const WeightLoader& load, const std::string& b, const std::string& suffix,
                                               int64_t n_ff) const {
  const int64_t d = config_.n_embd;
  return {load.matrix(b + "ffn_gate" + suffix + ".weight", n_ff, d), load.matrix(b + "ffn_up" + suffix + ".weight", n_ff, d),
          load.matrix(b + "ffn_down" + suffix + ".weight", d, n_ff)};
}

GpuFfn GpuTrunk::load_ffn(const WeightLoader& load, const std::string& b, const std::string& suffix, int64_t n_ff) {
  return upload_ffn(ffn_views(load, b, suffix, n_ff));
}

GpuFfn GpuTrunk::upload_ffn(const std::array<WeightView, 3>& w) {
  GpuFfn f;
  f.gate_up = upload_stacked(std::span(w).first(2), weight_bytes_);
  if (!f.gate_up) f.gate = upload(w[0], weight_bytes_), f.up = upload(w[1], weight_bytes_);
  f.down = upload(w[2], weight_bytes_);
  return f;
}

void GpuTrunk::finish_loading(const gguf::Reader& reader, const AttentionShape& attention, int n_kv_layers,
                              int device) {
  if (cpu_experts_ && (staging_bytes_ > 0 || placement_.pcie_experts > 0)) {
    std::string why;
    registered_ = RegisteredModel::create(reader, &why);
    if (!registered_) {
      spdlog::warn("gpu: the CPU computes every expert left in RAM (no streamed prefill, no PCIe experts): {}", why);
    } else {
      spdlog::info("gpu: the model's mapping registered with the driver in {:.2f} s", registered_->seconds());
      if (placement_.pcie_experts > 0) {
        pcie_table_value_ = fixed_pcie_table(placement_.pcie_experts, kPcieTableSlots);
        if (placement_.pcie_auto) {
          // Starts near where the H200 machine's 80B settled (about 2-3 of a token's 7-8 misses)
          // and moves from there.
          pcie_balance_.emplace(placement_.pcie_experts, 7);
          pcie_table_value_ = pcie_balance_->table(kPcieTableSlots);
        }
        pcie_table_ = DeviceBuffer(pcie_table_value_.size() * sizeof(int32_t));
        MOE_CUDA_CHECK(cudaMemcpy(pcie_table_.get(), pcie_table_value_.data(), pcie_table_.bytes(),
                                  cudaMemcpyHostToDevice));
      }
      if (staging_bytes_ > 0) {
        expert_stream_ = std::make_unique<ExpertStream>(*registered_, staging_bytes_);
        spdlog::info("gpu: prefills of {}+ tokens stream the experts left in RAM through a {} staging buffer",
                     kStreamMinTokens, format_bytes(staging_bytes_));
      }
    }
  }
  if (fixed_layers_ > 0) {
    spdlog::warn("gpu: the VRAM experts of {} layers stay fixed: the expert cache needs paired gate and up rows, "
                 "4-byte aligned expert rows and at most {} VRAM experts a layer",
                 fixed_layers_, kMaxExpertSlots);
  }
  if (cache_layers_ > 0 && registered_ && placement_.pcie_experts > 0) {
    spdlog::info("gpu: the VRAM experts of {} layers follow the routing: the PCIe experts land in the least recently "
                 "used slots",
                 cache_layers_);
  } else if (cache_layers_ > 0) {
    spdlog::info("gpu: no PCIe experts: the VRAM experts stay fixed (the expert cache fills through them)");
  }
  attention_ = attention;
  const std::vector<double> freq = rope_frequencies(attention.n_rot, attention.rope_base);
  rope_freq_ = DeviceBuffer(freq.size() * sizeof(double));
  MOE_CUDA_CHECK(cudaMemcpy(rope_freq_.get(), freq.data(), rope_freq_.bytes(), cudaMemcpyHostToDevice));
  config_.n_cache_layers = 0;  // the KV cache is in VRAM, not in the engine's KvCache
  config_.recurrent_floats = 0;  // and so is any recurrent state
  k_cache_.resize(size_t(n_kv_layers));
  v_cache_.resize(size_t(n_kv_layers));
  // Decode attention split over blocks (one token): scratch for the most chunks it takes.
  attention_partials_ = DeviceBuffer(size_t(attention.n_head) * kMaxAttentionChunks * size_t(attention.head_dim + 2) * sizeof(float));
  attention_counters_ = DeviceBuffer(size_t(attention.n_head) * sizeof(unsigned));
  MOE_CUDA_CHECK(cudaMemset(attention_counters_.get(), 0, attention_counters_.bytes()));
  spdlog::info("gpu: {} of weights on device {}", format_bytes(weight_bytes_), device);
}

void GpuTrunk::trace_device(const char* what, const float* values, size_t count) {
  if (!tracing()) return;
  std::vector<float> host(count);
  MOE_CUDA_CHECK(cudaMemcpyAsync(host.data(), values, count * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  trace(layer_, what, host);
}

void GpuTrunk::prefetch(int where, std::initializer_list<const GpuMatrix*> matrices) {
  if ((l2_prefetch_ & where) == 0) return;
  std::vector<L2Range> ranges;
  for (const GpuMatrix* m : matrices) {
    if (m != nullptr && m->get() != nullptr) ranges.push_back({m->get(), size_t(m->rows) * m->row_stride});
  }
  if (ranges.empty()) return;
  // The side stream starts after what the step's stream has queued so far.
  MOE_CUDA_CHECK(cudaEventRecord(prefetch_fork_, stream_));
  MOE_CUDA_CHECK(cudaStreamWaitEvent(prefetch_stream_, prefetch_fork_));
  prefetch_forked_ = true;
  MOE_CUDA_CHECK(prefetch_l2(ranges, prefetch_stream_));
}

void GpuTrunk::join_prefetches() {
  if (!prefetch_forked_) return;
  MOE_CUDA_CHECK(cudaEventRecord(prefetch_join_, prefetch_stream_));
  MOE_CUDA_CHECK(cudaStreamWaitEvent(stream_, prefetch_join_));
  prefetch_forked_ = false;
}

// ---- products and activations ----

const DeviceActivations& GpuTrunk::quantized(const GpuMatrix& w, const float* x, int n) {
  const GgmlType at = vec_dot_type(w.type);
  ActivationSlot& s = slot(at);
  return s.last = s.buffer.quantize(at, x, n, w.cols, stream_);
}

const DeviceActivations& GpuTrunk::reuse_or_quantize(const GpuMatrix& w, const DeviceActivations& a, const float* x,
                                                     int n) {
  return vec_dot_type(w.type) == a.type ? a : quantized(w, x, n);
}

const DeviceActivations& GpuTrunk::normed(const GpuMatrix& m, const float* x, const DeviceBuffer& w, int n, float* u) {
  const GgmlType at = vec_dot_type(m.type);
  const Prenormed ahead = std::exchange(prenormed_, {});
  if (ahead.x == x && ahead.weights == w.as<float>() && ahead.type == at && ahead.n == n && ahead.u == u) {
    return slot(at).last;
  }
  if (at == GgmlType::F32) {  // float weights read the normed rows as they are
    MOE_CUDA_CHECK(rms_norm(x, w.as<float>(), config_.rms_eps, n, int(m.cols), u, stream_));
    return quantized(m, u, n);
  }
  ActivationSlot& s = slot(at);
  return s.last = s.buffer.quantize_normed(at, x, w.as<float>(), config_.rms_eps, n, m.cols, u, stream_);
}

const DeviceActivations& GpuTrunk::gated_normed(const GpuMatrix& m, float* o, const float* z, const DeviceBuffer& w,
                                                int n, int head_width) {
  const GgmlType at = vec_dot_type(m.type);
  if (at == GgmlType::F32 || m.cols > ActivationBuffer::kMaxFusedWidth) {
    MOE_CUDA_CHECK(gated_rms_norm(o, z, w.as<float>(), config_.rms_eps, n * (m.cols / head_width), head_width, o, stream_));
    return quantized(m, o, n);
  }
  ActivationSlot& s = slot(at);
  return s.last = s.buffer.quantize_gated_norm(at, o, z, w.as<float>(), config_.rms_eps, n, m.cols, head_width, stream_);
}

ActivationBuffer::Target GpuTrunk::activation_target(const GpuMatrix& m, int n) {
  const GgmlType at = vec_dot_type(m.type);
  ActivationSlot& s = slot(at);
  const ActivationBuffer::Target t = s.buffer.target(at, n, m.cols);
  s.last = t.view;
  return t;
}

const DeviceActivations& GpuTrunk::swiglu_quantized(const GpuMatrix& m, const float* gu, int rows, int64_t width) {
  const GgmlType at = vec_dot_type(m.type);
  if (at == GgmlType::F32 || width > ActivationBuffer::kMaxFusedWidth) {
    float* h = g_.get(size_t(rows) * size_t(width));
    MOE_CUDA_CHECK(swiglu_pairs(gu, rows, width, h, stream_));
    return quantized(m, h, rows);
  }
  ActivationSlot& s = slot(at);
  return s.last = s.buffer.quantize_swiglu(at, gu, rows, width, stream_);
}

bool GpuTrunk::use_gemm(const GpuMatrix& w, int n) const {
  return n > kMaxMatvecTokens && gemm_ && has_gemm(w.type, w.cols);
}

// Many tokens: the GEMM where the format has one; else groups of kMaxMatvecTokens tokens, each
// group reading the weights once.
void GpuTrunk::product(const GpuMatrix& w, const DeviceActivations& all, float* y, bool accumulate) {
  const int n = all.n_tok;
  if (use_gemm(w, n)) {
    gemm(w.type, w.get(), w.row_stride, w.rows, all, y, stream_, accumulate, w.layout);
    return;
  }
  for (int t0 = 0; t0 < n; t0 += kMaxMatvecTokens) {
    const DeviceActivations part = all.rows(t0, std::min(kMaxMatvecTokens, n - t0));
    matvec(w.type, w.get(), w.row_stride, w.rows, part, y + int64_t(t0) * w.rows, stream_, accumulate, w.layout);
  }
}

// ---- blocks ----

void GpuTrunk::ensure_cache(int64_t positions) {
  if (positions <= cache_positions_) return;
  int64_t capacity = std::max<int64_t>(cache_positions_, 256);
  while (capacity < positions) capacity *= 2;
  // A hybrid plan counted its KV positions, not the doubling's (4097 positions would take 8192).
  if (placement_.kv_positions >= positions) capacity = std::min(capacity, placement_.kv_positions);
  const size_t row = kv_row_bytes(cache_type_, int64_t(config_.n_head_kv) * config_.head_dim);
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

void GpuTrunk::attention(const GpuAttention& w, int n, float* x, const GpuMatrix* then) {
  const ModelConfig& c = config_;
  const AttentionShape& s = attention_;
  const int hd = c.head_dim, q_dim = c.n_head * hd, kv_dim = c.n_head_kv * hd;
  const int64_t q_rows = w.q.rows;  // q_dim, or 2 q_dim with the output gates
  float* u = u_.get(size_t(n) * c.n_embd);
  // q (and gates) [n][q_rows], then k and v [n][kv_dim]: for one token exactly the stacked
  // product's output.
  float* q = qkv_.get(size_t(n) * (q_rows + 2 * kv_dim));
  float* k = q + size_t(n) * q_rows;
  float* v = k + size_t(n) * kv_dim;
  project3(w.qkv, {&w.q, &w.k, &w.v}, normed(w.q, x, w.norm, n, u), u, q);
  trace_device("attn_in", u, size_t(n) * c.n_embd);
  const int32_t* pos = pos_.get(size_t(n));
  void* kc = k_cache_[size_t(w.cache_layer)].get();
  void* vc = v_cache_[size_t(w.cache_layer)].get();
  const float scale = 1.0f / std::sqrt(float(hd));
  if (n == 1 && vec_dot_type(w.o.type) == GgmlType::Q8_0) {
    // Decode: the q/k norms, RoPE and KV store, the output gate and the quantization for the
    // output product all in the attention launch.
    prefetch(kPrefetchMixerOutput, {&w.o, then});
    ActivationSlot& s8 = slot(GgmlType::Q8_0);
    const ActivationBuffer::Target out = s8.buffer.target(GgmlType::Q8_0, n, q_dim);
    const int64_t stride = s.gated ? 2 * hd : hd;  // a query head, then its gate
    MOE_CUDA_CHECK(attend_decode(
        {.kv_type = cache_type_, .k_cache = kc, .v_cache = vc, .pos = pos, .n = n, .n_head = c.n_head,
         .n_head_kv = c.n_head_kv, .head_dim = hd,
         .scale = scale, .gate = s.gated ? q + hd : nullptr, .gate_stride = stride, .qs = out.qs,
         .scales = out.scales,
         .fresh = {.q = q, .q_stride = stride, .k = k, .v = v, .q_norm = w.q_norm.as<float>(),
                   .k_norm = w.k_norm.as<float>(), .eps = s.rms_eps, .n_rot = s.n_rot, .freq = rope_freq_.as<double>(),
                   .k_cache = kc, .v_cache = vc},
         .chunks = attention_chunks(cache_positions_), .partials = attention_partials_.as<float>(),
         .counters = attention_counters_.as<unsigned>()},
        stream_));
    product(w.o, s8.last = out.view, x, true);
    trace_device("attn_out", x, size_t(n) * c.n_embd);
    return;
  }
  float* gate = nullptr;
  if (s.gated) {
    float* qg = q;
    q = gate_.get(size_t(n) * 2 * q_dim);
    gate = q + size_t(n) * q_dim;
    MOE_CUDA_CHECK(split_gated_heads(qg, int64_t(n) * c.n_head, hd, q, gate, stream_));
  }
  MOE_CUDA_CHECK(qk_norm_rope_store(q, k, v, w.q_norm.as<float>(), w.k_norm.as<float>(), s.rms_eps, pos, n, c.n_head,
                                    c.n_head_kv, hd, s.n_rot, rope_freq_.as<double>(), cache_type_, kc, vc, stream_));
  float* mixed = mixed_.get(size_t(n) * q_dim);
  MOE_CUDA_CHECK(attend(q, cache_type_, kc, vc, pos, n, c.n_head, c.n_head_kv, hd, scale, mixed, stream_));
  if (gate) MOE_CUDA_CHECK(sigmoid_mul(mixed, gate, int64_t(n) * q_dim, stream_));
  product(w.o, quantized(w.o, mixed, n), x, true);
  trace_device("attn_out", x, size_t(n) * c.n_embd);
}

void GpuTrunk::ffn_rows(const GpuFfn& w, const DeviceActivations& uq, const float* u, int n, float* y,
                        bool accumulate) {
  const int64_t ff = w.down.cols;
  if (w.gate_up) {
    float* gu = up_.get(size_t(n) * 2 * ff);
    product(*w.gate_up, reuse_or_quantize(*w.gate_up, uq, u, n), gu);
    product(w.down, swiglu_quantized(w.down, gu, n, ff), y, accumulate);
  } else {
    float* g = g_.get(size_t(n) * ff);
    float* up = up_.get(size_t(n) * ff);
    const DeviceActivations ug = reuse_or_quantize(w.gate, uq, u, n);
    product(w.gate, ug, g);
    product(w.up, reuse_or_quantize(w.up, ug, u, n), up);
    MOE_CUDA_CHECK(swiglu(g, up, int64_t(n) * ff, g, stream_));
    product(w.down, quantized(w.down, g, n), y, accumulate);
  }
}

void GpuTrunk::project3(const std::optional<GpuMatrix>& stacked, std::array<const GpuMatrix*, 3> parts,
                        const DeviceActivations& uq, const float* u, float* out) {
  const int n = uq.n_tok;
  if (stacked && n == 1) {
    product(*stacked, uq, out);
    return;
  }
  if (stacked && use_gemm(*stacked, n)) {  // one GEMM of enough thread blocks, then the columns apart
    float* all = stacked_out_.get(size_t(n) * size_t(stacked->rows));
    product(*stacked, uq, all);
    MOE_CUDA_CHECK(split_columns(all, n, parts[0]->rows, parts[1]->rows, parts[2]->rows, out, stream_));
    return;
  }
  for (const GpuMatrix* m : parts) {  // u quantized once where the formats share an activation type
    product(*m, reuse_or_quantize(*m, uq, u, n), out);
    out += int64_t(n) * m->rows;
  }
}

void GpuTrunk::dense_ffn(const GpuFfn& w, const DeviceBuffer& norm, int n, float* x) {
  const size_t count = size_t(n) * config_.n_embd;
  float* u = u_.get(count);
  const DeviceActivations& uq = normed(w.gate_up ? *w.gate_up : w.gate, x, norm, n, u);
  trace_device("ffn_in", u, count);
  ffn_rows(w, uq, u, n, x, true);
  trace_device("ffn_out", x, count);
}

// Routing, then every (token, rank) row through its expert: one launch per matrix, each
// token's normed row read once per expert it goes to. The shared expert (Qwen3-Next) runs as
// a dense FFN into rows of its own; the combine adds it with its gate.
void GpuTrunk::enqueue(int n, int first_logit) {
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd;
  prenormed_ = {};
  int32_t* ids = ids_.get(size_t(n));
  MOE_CUDA_CHECK(cudaMemcpyAsync(ids, ids_host_.as<int32_t>(), size_t(n) * 4, cudaMemcpyHostToDevice, stream_));
  MOE_CUDA_CHECK(cudaMemcpyAsync(pos_.get(size_t(n)), pos_host_.as<int32_t>(), size_t(n) * 4, cudaMemcpyHostToDevice,
                                 stream_));
  float* x = x_.get(size_t(n) * d);
  MOE_CUDA_CHECK(get_rows(token_embd_.type, token_embd_.get(), token_embd_.row_stride, d, ids, n, x, stream_));
  layer_ = -1;
  trace_device("embd", x, size_t(n) * d);
  layers(n, x);
  join_prefetches();  // a captured step ends with every stream it forked joined
  const int count = n - first_logit;
  float* u = u_.get(size_t(n) * d);
  MOE_CUDA_CHECK(rms_norm(x + int64_t(first_logit) * d, output_norm_.as<float>(), c.rms_eps, count, int(d), u, stream_));
  float* logits = logits_.get(size_t(count) * c.n_vocab);
  product(output_, u, count, logits);
  MOE_CUDA_CHECK(cudaMemcpyAsync(logits_host_.as<float>(), logits, size_t(count) * c.n_vocab * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream_));
}

void GpuTrunk::run_step(int n, int first_logit) {
  const bool decode = n == 1;
  if (tracing()) {  // each checkpoint copies back mid-step: no graph
    enqueue(n, first_logit);
    decode_graph_valid_ = false;
    return;
  }
  if (decode && decode_graph_valid_) {
    MOE_CUDA_CHECK(cudaGraphLaunch(decode_graph_, stream_));
  } else if (decode && decode_sized_) {
    // Every buffer already has its size: record the step, keep the graph, run it.
    cudaGraph_t graph = nullptr;
    MOE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue(1, 0);
    } catch (...) {
      prefetch_forked_ = false;
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
    decode_sized_ = decode;
    decode_graph_valid_ = false;  // a larger call may have moved buffers the graph uses
  }
}

void GpuTrunk::forward(std::span<const BatchEntry> batch, ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int n = check_batch(batch, c.n_vocab);
  if (batch.size() != 1) fail("gpu: one sequence per forward pass for now (got {})", batch.size());
  const BatchEntry& entry = batch.front();
  const int64_t pos0 = entry.seq->length();
  if (owner_ != entry.seq && pos0 != 0) {
    fail("gpu: the KV cache holds another sequence; a second sequence must start at position 0");
  }
  if (has_recurrent_state() && pos0 != 0 && pos0 != state_length_) {
    fail("forward: a sequence of {} positions has recurrent state for {}: it cannot be truncated (fork it instead)",
         pos0, state_length_);
  }
  // The cache lives in VRAM in the sequence's type; a new sequence may bring another type.
  const GgmlType seq_type = entry.seq->cache_type();
  const std::optional<KvType> type = gpu_kv_type(seq_type);
  if (!type) {
    fail("gpu: a {} KV cache is not supported on the GPU (f16, q8_0 or q4_0); use --kv-type f16, or --device cpu",
         type_name(seq_type));
  }
  // (Only a new sequence, at position 0, can bring one: see the owner check above.)
  if (*type != cache_type_) {
    cache_type_ = *type;
    for (auto& cache : k_cache_) cache = DeviceBuffer();
    for (auto& cache : v_cache_) cache = DeviceBuffer();
    cache_positions_ = 0;
    decode_graph_valid_ = false;
  }
  grow_sequences(batch);
  owner_ = entry.seq;
  ensure_cache(pos0 + n);
  if (pos0 == 0) reset_recurrent_state();

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
  if (routing_source() && c.n_expert > 0) {  // [layer][token][k], read by the step's kernels
    const size_t per_layer = size_t(n) * size_t(c.n_expert_used);
    if (forced_host_.bytes() < size_t(c.n_layer) * per_layer * sizeof(int32_t)) {
      forced_host_ = PinnedBuffer(size_t(c.n_layer) * per_layer * sizeof(int32_t));
      decode_graph_valid_ = false;
    }
    for (int il = 0; il < c.n_layer; ++il) {
      const auto picks = forced_routing(il, n, c.n_expert_used);
      std::copy(picks.begin(), picks.end(), forced_host_.as<int32_t>() + size_t(il) * per_layer);
    }
  }
  // A long prefill runs every expert on the GPU from the staging buffer (expert_stream.h).
  streaming_step_ = expert_stream_ && n >= kStreamMinTokens;
  if (cpu_experts_ && !streaming_step_) {
    balance_pcie(n);
    run_hybrid_step(n, first_logit, pool);
  } else {
    run_step(n, first_logit);
  }
  state_length_ = pos0 + n;
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (cpu_experts_ && !streaming_step_) cpu_experts_->add_gpu_timeline();
  std::copy_n(logits_host_.as<float>(), size_t(count) * c.n_vocab, entry.logits.data());
}

}  // namespace moe::cuda
