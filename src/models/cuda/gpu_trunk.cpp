#include "models/cuda/gpu_trunk.h"

#include <algorithm>
#include <array>
#include <cmath>
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
#include "ops/cuda/norm_route.h"
#include "ops/cuda/ops.h"

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
}

GpuTrunk::~GpuTrunk() {
  if (decode_graph_) cudaGraphExecDestroy(decode_graph_);
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

GpuMoe GpuTrunk::load_moe(const WeightLoader& load, int layer, int64_t n_ff_shared) {
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd, ff = c.n_ff_expert;
  const std::string b = "blk." + std::to_string(layer) + ".";
  GpuMoe m;
  const WeightView router = load.matrix(b + "ffn_gate_inp.weight", c.n_expert, d);
  const ExpertWeights all_gate = load.experts(b + "ffn_gate_exps.weight", ff, d, c.n_expert);
  const ExpertWeights all_up = load.experts(b + "ffn_up_exps.weight", ff, d, c.n_expert);
  const ExpertWeights all_down = load.experts(b + "ffn_down_exps.weight", d, ff, c.n_expert);
  // Hybrid: the first n_vram experts go to VRAM, the CPU reads the rest from the mapped file.
  const std::vector<int>& vram = placement_.vram_experts;
  const int n_vram = vram.empty() ? c.n_expert : std::clamp(vram.at(size_t(layer)), 0, c.n_expert);
  auto first = [n_vram](ExpertWeights w) {
    w.n_expert = n_vram;
    return w;
  };
  const ExpertWeights gate = first(all_gate), up = first(all_up), down = first(all_down);
  std::optional<std::array<WeightView, 3>> shared;  // gate, up, down
  if (n_ff_shared > 0) {
    shared = ffn_views(load, b, "_shexp", n_ff_shared);
    const std::vector<float> shared_gate = load.gate_vector(b + "ffn_gate_inp_shexp.weight", d);
    if (router.type == GgmlType::F32) {  // the shared expert's gate as one more router row
      const std::array parts{router, WeightView::packed(GgmlType::F32, 1, d,
                                                        reinterpret_cast<const std::byte*>(shared_gate.data()))};
      m.router_gate = upload_stacked(parts, weight_bytes_);
    }
    if (!m.router_gate) m.shared_gate = upload(shared_gate, weight_bytes_);
  }
  m.router = m.router_gate ? slice(*m.router_gate, 0, c.n_expert) : upload(router, weight_bytes_);
  // The shared expert as expert n_expert where it has the experts' shape and its gate comes
  // out of the router: routing gives each token one more expert (weight sigmoid(gate)), and
  // the shared expert's three products join the experts' launches.
  const bool as_expert = shared && m.router_gate && fits_as_expert(gate, (*shared)[0]) &&
                         fits_as_expert(up, (*shared)[1]) && fits_as_expert(down, (*shared)[2]);
  const WeightView* extra_gate = as_expert ? &(*shared)[0] : nullptr;
  const WeightView* extra_up = as_expert ? &(*shared)[1] : nullptr;
  m.n_slots = n_vram + (as_expert ? 1 : 0);
  if (m.n_slots > 0) {
    m.gate_up = upload_paired(gate, up, weight_bytes_, extra_gate, extra_up);
    if (!m.gate_up) m.gate = upload(gate, weight_bytes_, extra_gate), m.up = upload(up, weight_bytes_, extra_up);
    m.down = upload(down, weight_bytes_, as_expert ? &(*shared)[2] : nullptr);
  }
  if (as_expert) {
    m.shared_expert = c.n_expert;
  } else if (shared) {
    m.shared = upload_ffn(*shared);
  }
  m.n_expert_used = c.n_expert_used;
  if (n_vram < c.n_expert) {
    if (!cpu_experts_) cpu_experts_.emplace(d, c.n_expert_used + (as_expert ? 1 : 0), c.n_expert_used);
    m.hybrid = cpu_experts_->add_layer(all_gate, all_up, all_down);
    m.ram = StreamedLayer{.gate = all_gate, .up = all_up, .down = all_down, .shared = as_expert ? shared : std::nullopt};
    if (placement_.stream_prefill) staging_bytes_ = std::max(staging_bytes_, ExpertStream::bytes(*m.ram));
    std::vector<int32_t> slot_of(size_t(c.n_expert) + 1, -1);
    for (int e = 0; e < n_vram; ++e) slot_of[size_t(e)] = e;
    if (as_expert) slot_of[size_t(c.n_expert)] = n_vram;
    m.slot_of = DeviceBuffer(slot_of.size() * sizeof(int32_t));
    MOE_CUDA_CHECK(cudaMemcpy(m.slot_of.get(), slot_of.data(), m.slot_of.bytes(), cudaMemcpyHostToDevice));
    ExpertRows rows[kMaxExpertMatrices];
    if (m.gate_up) cache_rows(m, rows);
    if (placement_.expert_cache && n_vram > 0 && n_vram <= kMaxExpertSlots && m.gate_up &&
        std::all_of(std::begin(rows), std::end(rows), expert_rows_fit)) {
      // expert_of | stamp | tick: slot s holds expert s, nothing used yet. (The buffer's address
      // outlives the move of m.)
      std::vector<int32_t> state(2 * size_t(n_vram) + 1, 0);
      for (int s = 0; s < n_vram; ++s) state[size_t(s)] = s;
      m.cache_state = DeviceBuffer(state.size() * sizeof(int32_t));
      MOE_CUDA_CHECK(cudaMemcpy(m.cache_state.get(), state.data(), m.cache_state.bytes(), cudaMemcpyHostToDevice));
      int32_t* p = m.cache_state.as<int32_t>();
      m.cache = ExpertSlots{.expert_of = p, .stamp = reinterpret_cast<uint32_t*>(p + n_vram),
                            .tick = reinterpret_cast<uint32_t*>(p + 2 * n_vram), .n_slots = n_vram};
      ++cache_layers_;
    } else if (placement_.expert_cache && n_vram > 0) {
      ++fixed_layers_;
    }
  }
  return m;
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

std::optional<DeviceActivations> GpuTrunk::normed_and_routed(const GpuMatrix& first, const GpuMatrix& router,
                                                             const float* x, const DeviceBuffer& norm, float* u,
                                                             float* logits, const RouteTarget& route) {
  // Where it pays (performance.md 2026-11-28 (e)): Qwen3-30B's 128-row router gained 3% of decode
  // speed, Qwen3-Next's 513 rows lost 0.5% (every one of 129 blocks norming the row costs more
  // than the launch it saves). Float experts read u as normed() makes it for them, by a norm
  // that sums in another order.
  constexpr int64_t kMaxRows = 256;
  const GgmlType at = vec_dot_type(first.type);
  if (router.type != GgmlType::F32 || router.layout != GpuLayout::Gguf || router.rows > kMaxRows ||
      at == GgmlType::F32 || first.cols != router.cols || !fits_norm_route(router.rows, router.cols, route)) {
    return std::nullopt;
  }
  prenormed_ = {};
  const ActivationBuffer::Target t = activation_target(first, 1);
  MOE_CUDA_CHECK(norm_route({.x = x, .norm = norm.as<float>(), .eps = config_.rms_eps, .width = router.cols, .u = u,
                             .qs = t.qs, .scales = t.scales, .sums = t.sums, .k_quant = at == GgmlType::Q8_K,
                             .router = static_cast<const float*>(router.get()), .row_stride = router.row_stride,
                             .rows = router.rows, .logits = logits, .route = route},
                            stream_));
  return t.view;
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

void GpuTrunk::attention(const GpuAttention& w, int n, float* x) {
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
void GpuTrunk::moe_ffn(const GpuMoe& w, const DeviceBuffer& norm, int n, float* x, NextNorm next) {
  const ModelConfig& c = config_;
  // Rows per token: the routed experts, and the shared expert where it runs as one more.
  const int k = w.n_expert_used + (w.shared_expert >= 0 ? 1 : 0), rows = n * k;
  const int64_t d = c.n_embd, ff = c.n_ff_expert;
  float* u = u_.get(size_t(n) * d);
  // A copy of the view: the slot's `last` changes with the next quantization. Its memory stays
  // valid until a product's output is quantized to the same type, so every product that reads
  // the normed rows runs before that.
  const GpuMatrix& router = w.router_gate ? *w.router_gate : w.router;
  // The experts the GPU computes: those in VRAM or, in a streamed prefill (expert_stream.h),
  // all of the layer's, copied into the staging buffer (the shared expert as expert n_expert).
  std::optional<StagedExperts> staged;
  if (w.hybrid >= 0 && streaming_step_) staged = expert_stream_->stage(*w.ram, stream_);
  const bool hybrid = w.hybrid >= 0 && !staged;  // the CPU takes the slots of experts not in VRAM
  const GpuMatrix* gate_up = !staged && w.gate_up ? &*w.gate_up : nullptr;
  const GpuMatrix& gate = staged ? staged->gate : w.gate;
  const GpuMatrix& up = staged ? staged->up : w.up;
  const GpuMatrix& down = staged ? staged->down : w.down;
  const int n_slots = staged ? c.n_expert + (w.shared_expert >= 0 ? 1 : 0) : w.n_slots;
  float* logits = router_.get(size_t(n) * size_t(router.rows));
  int32_t* experts = experts_.get(size_t(rows));
  float* weights = weights_.get(size_t(rows));
  const RouteTarget route{.n_expert = c.n_expert, .k = w.n_expert_used, .renormalize = true,
                          .shared_expert = w.shared_expert, .experts = experts, .weights = weights,
                          .counter = route_counter_.as<unsigned>()};
  // Quantized for the experts' first product (for the router's where no expert is in VRAM).
  const GpuMatrix& first = n_slots > 0 ? (gate_up ? *gate_up : gate) : router;
  std::optional<DeviceActivations> fused;  // decode: the norm, the router's product and the routing in one launch
  if (n == 1) fused = normed_and_routed(first, router, x, norm, u, logits, route);
  const DeviceActivations uq = fused ? *fused : normed(first, x, norm, n, u);
  trace_device("ffn_in", u, size_t(n) * d);
  if (n == 1 && !fused) {  // decode: the router's product routes in its last thread block
    const DeviceActivations& ur = reuse_or_quantize(router, uq, u, n);  // another type: another slot
    matvec_route(router.type, router.get(), router.row_stride, router.rows, ur, logits, route, stream_, router.layout);
  } else if (n > 1) {
    product(router, reuse_or_quantize(router, uq, u, n), logits);
    MOE_CUDA_CHECK(route_top_k(logits, n, c.n_expert, w.n_expert_used, true, experts, weights, stream_, router.rows,
                               w.shared_expert));
  }
  if (routing_source()) {  // benchmarks: the experts chosen outside the model (forward() wrote them)
    const int32_t* forced = forced_host_.as<int32_t>() + size_t(layer_) * size_t(n) * size_t(w.n_expert_used);
    MOE_CUDA_CHECK(force_experts(forced, n, w.n_expert_used, k, experts, stream_));
  }

  float* expert_out = expert_out_.get(size_t(rows) * d);
  const bool gpu_experts = n_slots > 0;
  // Prefill: the rows grouped by expert once, for GEMM tiles of one expert each.
  const bool grouped = gpu_experts && use_gemm(gate_up ? *gate_up : gate, n) && use_gemm(down, n) &&
                       (gate_up || use_gemm(up, n));
  // Decode: some of the slots not in VRAM read over PCIe by the GPU (PCIe experts), where the
  // VRAM experts' products leave [gate | up] rows the down products' SwiGLU reads.
  const int pcie = hybrid && n <= kMaxMatvecTokens && !grouped && registered_ && (gate_up || !gpu_experts) &&
                           vec_dot_type(w.ram->down.first.type) != GgmlType::F32 &&
                           ff <= ActivationBuffer::kMaxFusedWidth
                       ? placement_.pcie_experts
                       : 0;
  int32_t* ram_ids = pcie ? ram_ids_.get(size_t(rows)) : nullptr;
  if (ram_ids) up_.get(size_t(rows) * 2 * ff);
  // The expert cache: the PCIe experts are copied into slots and computed there (with the rest).
  const bool fill = pcie && w.cache.n_slots > 0;
  // Hybrid: the CPU takes the other slots of the experts not in VRAM (their ids become -1 here).
  if (hybrid) {
    MOE_CUDA_CHECK(publish_experts(u, n, d, experts, weights, k, w.slot_of.as<int32_t>(), cpu_experts_->handoff(),
                                   w.hybrid, publish_counter_.as<unsigned>(), stream_, pcie, pcie ? ram_ids : nullptr,
                                   pcie ? pcie_table_.as<int32_t>() : nullptr, fill ? &w.cache : nullptr));
  }
  if (fill) fill_slots(w, ram_ids, experts, rows);
  if (grouped) groups_.build(experts, rows, n_slots, stream_);
  // Rows the GPU does not compute add zero (the GEMM leaves them alone).
  if (hybrid && (grouped || !gpu_experts)) {
    MOE_CUDA_CHECK(cudaMemsetAsync(expert_out, 0, size_t(rows) * d * sizeof(float), stream_));
  }
  auto experts_product = [&](const GpuMatrix& m, const DeviceActivations& a, float* y, int row_div) {
    if (grouped) {
      gemm_experts(m.type, m.get(), m.expert_stride, m.row_stride, m.rows, a, row_div, groups_, y, stream_, m.layout);
    } else {
      matvec_experts(m.type, m.get(), m.expert_stride, m.row_stride, m.rows, a, experts, y, stream_, row_div, m.layout);
    }
  };
  if (!gpu_experts) {
    // every routed expert on the CPU, no shared expert among them
  } else if (gate_up) {  // each expert's gate and up rows in one product, side by side
    float* gu = up_.get(size_t(rows) * 2 * ff);
    experts_product(*gate_up, uq, gu, k);
    if (!grouped && vec_dot_type(down.type) != GgmlType::F32 && ff <= ActivationBuffer::kMaxFusedWidth) {
      // decode: the SwiGLU and its quantization in the down products' launch
      matvec_experts_swiglu(down.type, down.get(), down.expert_stride, down.row_stride, down.rows, gu, rows, ff,
                            experts, expert_out, stream_, down.layout);
    } else {
      experts_product(down, swiglu_quantized(down, gu, rows, ff), expert_out, 1);
    }
  } else {
    float* g = g_.get(size_t(rows) * ff);
    float* up_rows = up_.get(size_t(rows) * ff);
    experts_product(gate, uq, g, k);
    experts_product(up, reuse_or_quantize(up, uq, u, n), up_rows, k);
    MOE_CUDA_CHECK(swiglu(g, up_rows, int64_t(rows) * ff, g, stream_));
    experts_product(down, quantized(down, g, rows), expert_out, 1);
  }
  if (staged) expert_stream_->done(stream_);  // the next layer's copy may overwrite the buffer
  if (pcie && !fill) ram_experts(*w.ram, uq, u, n, k, ram_ids, expert_out);

  // A shared expert not run as one more expert (shapes unlike the experts'): a dense FFN of the
  // normed rows, quantized again (the experts' products have reused their buffer).
  float* shared_out = nullptr;
  float* shared_logit = nullptr;
  if (w.shared) {
    const GpuFfn& shared = *w.shared;
    shared_out = shared_out_.get(size_t(n) * d);
    if (w.router_gate) {  // the router's last row
      shared_logit = logits + c.n_expert;
    } else {
      shared_logit = shared_logit_.get(size_t(n));
      MOE_CUDA_CHECK(dot_rows(u, w.shared_gate.as<float>(), n, int(d), shared_logit, stream_));
    }
    ffn_rows(shared, quantized(shared.gate_up ? *shared.gate_up : shared.gate, u, n), u, n, shared_out, false);
  }
  CombineRows combine{.rows = expert_out, .weights = weights, .k = k, .shared = shared_out,
                      .shared_logit = shared_logit, .logit_stride = w.router_gate ? router.rows : 1};
  const GgmlType next_type = next.first ? vec_dot_type(next.first->type) : GgmlType::F32;
  if (n <= kMaxMatvecTokens && next_type != GgmlType::F32 && d <= ActivationBuffer::kMaxFusedWidth) {
    // The next block's normed input from the same launch: its normed() call takes it. A hybrid
    // layer's combine also waits for the CPU's sum and adds it.
    if (hybrid) combine.cpu = cpu_experts_->handoff(), combine.cpu_layer = w.hybrid;
    ActivationSlot& s = slot(next_type);
    s.last = s.buffer.combine_quantize_normed(next_type, combine, x, next.weights->as<float>(), c.rms_eps, n, d, u,
                                              stream_);
    prenormed_ = {.x = x, .weights = next.weights->as<float>(), .type = next_type, .n = n, .u = u};
  } else {
    if (hybrid) MOE_CUDA_CHECK(add_cpu_sum(cpu_experts_->handoff(), w.hybrid, n, d, x, stream_));
    MOE_CUDA_CHECK(combine_experts(expert_out, weights, n, k, d, x, stream_, true, shared_out, shared_logit,
                                   combine.logit_stride));
  }
  trace_device("ffn_out", x, size_t(n) * d);
}

// ---- steps ----

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
