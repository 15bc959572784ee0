// The MoE block of GpuTrunk: a layer's routed experts loaded (into VRAM, and where the placement
// keeps some in RAM, for the CPU and the PCIe reads), and a step's block: the norm and the
// routing, the hybrid's hand-off, the expert products and the combine. The hybrid's own parts
// (the PCIe experts, the cache's copies, the step beside the CPU) are in gpu_trunk_hybrid.cpp,
// the rest of the class in gpu_trunk.cpp.
#include "models/cuda/gpu_trunk.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "ops/cuda/cuda_check.h"
#include "ops/cuda/handoff.h"
#include "ops/cuda/layout.h"
#include "ops/cuda/matvec.h"
#include "ops/cuda/norm_route.h"
#include "ops/cuda/ops.h"

namespace moe::cuda {

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

std::optional<DeviceActivations> GpuTrunk::normed_and_routed(const GpuMatrix& first, const GpuMatrix& router,
                                                             const float* x, const DeviceBuffer& norm, float* u,
                                                             float* logits, const RouteTarget& route) {
  // Where it pays (performance.md 2026-11-28 (e), (f)): Qwen3-30B's 128-row router gains 3-4% of
  // decode speed. Qwen3-Next's 513 rows lose 0.2-0.9% fused, though the launch alone is faster
  // than the two it replaces since its blocks request their router rows before the wait (8.6
  // against 9.56 us in bench_cuda_decode_ops). Float experts read u as normed() makes it for
  // them, by a norm that sums in another order.
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
  // A hybrid layer's combine waits for the CPU's sum: the next block's input product's rows
  // fetched into L2 meanwhile (-3.5 us a layer of the serial part). Not where the combine runs
  // at once: there the fetch still runs into the product and decode lost 3% (performance.md
  // 2026-11-28 (f)).
  if (n == 1 && hybrid) prefetch(kPrefetchNextInput, {next.input});
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

}  // namespace moe::cuda
