// Qwen3-Next on one GPU: the CPU model file's forward pass (qwen3next.cpp, delta_net.cpp) on
// device buffers. Three of every four layers mix tokens with a gated delta-net, the fourth
// with gated attention; every layer's FFN is routed experts plus a gated shared expert.
//   x = embed(tokens)
//   per layer: x += mixer(rmsnorm(x));  x += moe(rmsnorm(x))
//   logits = output(rmsnorm(x))
// The delta-nets' state (conv history and the per-head matrices) lives in VRAM for one
// sequence, as the KV cache does.
#include <array>
#include <optional>

#include "core/error.h"
#include "models/cuda/gpu_models.h"
#include "models/cuda/gpu_trunk.h"
#include "models/hparams.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/delta_net.h"
#include "ops/cuda/ops.h"

namespace moe::cuda {
namespace {

struct GpuDeltaNet {
  DeviceBuffer norm;  // the block's input RMSNorm
  GpuMatrix qkv, z, ba;
  std::optional<GpuMatrix> in;  // qkv, z and ba stacked (one product a decode step), where they share a type
  DeviceBuffer conv, a, dt_bias, out_norm;
  GpuMatrix out;
  int slot = 0;  // which delta-net layer: its part of the state buffers
};

struct Layer {
  bool recurrent = false;
  GpuDeltaNet delta;
  GpuAttention attn;
  DeviceBuffer post_attention_norm;
  GpuMoe moe;
};

class Qwen3NextGpu final : public GpuTrunk {
 public:
  Qwen3NextGpu(const gguf::Reader& reader, int device, HybridPlacement placement);

 private:
  void layers(int n, float* x) override;
  bool has_recurrent_state() const override { return true; }
  void reset_recurrent_state() override;
  GpuDeltaNet load_delta_net(const WeightLoader& load, const std::string& b, int slot);
  // x += delta_net(rmsnorm(x)) for n tokens of the sequence, continuing its state. `then`: the
  // layer's router, prefetched with the output projection in a decode step.
  void delta_net(const GpuDeltaNet& w, int n, float* x, const GpuMatrix* then);

  DeltaNetShape ds_;
  std::vector<Layer> layers_;
  DeviceBuffer conv_state_, ssm_state_;  // [delta layer][...]: conv_state_floats(), ssm_state_floats() each
  DeviceBuffer step_counters_;            // delta_net_step()'s, one a key head (zero between launches)
  Scratch<float> in_, dn_out_;
};

Qwen3NextGpu::Qwen3NextGpu(const gguf::Reader& reader, int device, HybridPlacement placement)
    : GpuTrunk(device, std::move(placement)) {
  config_ = read_transformer_config(reader);
  ModelConfig& c = config_;
  const Qwen3NextShape shape = read_qwen3next_config(reader, c);
  ds_ = shape.delta;
  const WeightLoader load(reader);
  load_head(load);
  int n_recurrent = 0, n_attention = 0;
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    Layer L;
    L.recurrent = shape.recurrent(il);
    if (L.recurrent) {
      L.delta = load_delta_net(load, b, n_recurrent++);
    } else {
      L.attn = load_attention(load, b, true, n_attention++);
    }
    L.post_attention_norm = load_vector(load, b + "post_attention_norm.weight", c.n_embd);
    L.moe = load_moe(load, il, shape.n_ff_shared);
    layers_.push_back(std::move(L));
  }
  conv_state_ = DeviceBuffer(std::max<size_t>(1, size_t(n_recurrent) * ds_.conv_state_floats()) * sizeof(float));
  ssm_state_ = DeviceBuffer(std::max<size_t>(1, size_t(n_recurrent) * ds_.ssm_state_floats()) * sizeof(float));
  step_counters_ = DeviceBuffer(size_t(std::max(1, ds_.n_k_heads)) * sizeof(unsigned));
  MOE_CUDA_CHECK(cudaMemset(step_counters_.get(), 0, step_counters_.bytes()));
  finish_loading(reader, shape.attention, n_attention, device);
}

GpuDeltaNet Qwen3NextGpu::load_delta_net(const WeightLoader& load, const std::string& b, int slot) {
  const ModelConfig& c = config_;
  const int64_t d = c.n_embd;
  size_t bytes = 0;
  GpuDeltaNet w;
  w.norm = load_vector(load, b + "attn_norm.weight", d);
  const std::array in{load.matrix(b + "attn_qkv.weight", ds_.channels(), d),
                      load.matrix(b + "attn_gate.weight", ds_.value_dim(), d),
                      load.matrix(b + "ssm_ba.weight", 2 * ds_.n_v_heads, d)};
  w.in = upload_stacked(in, bytes);
  if (w.in) {
    w.qkv = slice(*w.in, 0, in[0].rows);
    w.z = slice(*w.in, in[0].rows, in[1].rows);
    w.ba = slice(*w.in, in[0].rows + in[1].rows, in[2].rows);
  } else {
    w.qkv = upload(in[0], bytes), w.z = upload(in[1], bytes), w.ba = upload(in[2], bytes);
  }
  w.conv = upload(load.floats(b + "ssm_conv1d.weight", {ds_.conv_kernel, ds_.channels()}), bytes);
  w.a = upload(load.vector(b + "ssm_a", ds_.n_v_heads), bytes);
  w.dt_bias = upload(load.vector(b + "ssm_dt.bias", ds_.n_v_heads), bytes);
  w.out_norm = upload(load.vector(b + "ssm_norm.weight", ds_.d_v), bytes);
  w.out = upload(load.matrix(b + "ssm_out.weight", d, ds_.value_dim()), bytes);
  add_weight_bytes(bytes);
  w.slot = slot;
  return w;
}

void Qwen3NextGpu::reset_recurrent_state() {
  MOE_CUDA_CHECK(cudaMemsetAsync(conv_state_.get(), 0, conv_state_.bytes(), stream_));
  MOE_CUDA_CHECK(cudaMemsetAsync(ssm_state_.get(), 0, ssm_state_.bytes(), stream_));
}

void Qwen3NextGpu::delta_net(const GpuDeltaNet& w, int n, float* x, const GpuMatrix* then) {
  const int64_t ch = ds_.channels(), vd = ds_.value_dim(), nv = ds_.n_v_heads;
  float* u = u_.get(size_t(n) * config_.n_embd);
  // mixed [n][ch] (the conv's input: q | k | v heads), then z [n][vd], then ba [n][2 nv]: for
  // one token exactly the stacked product's output.
  float* mixed = in_.get(size_t(n) * size_t(ch + vd + 2 * nv));
  float* z = mixed + n * ch;
  float* ba = z + n * vd;
  project3(w.in, {&w.qkv, &w.z, &w.ba}, normed(w.qkv, x, w.norm, n, u), u, mixed);
  trace_device("attn_in", u, size_t(n) * config_.n_embd);
  float* conv_state = conv_state_.as<float>() + size_t(w.slot) * ds_.conv_state_floats();
  float* state = ssm_state_.as<float>() + size_t(w.slot) * ds_.ssm_state_floats();
  if (n == 1 && vec_dot_type(w.out.type) == GgmlType::Q8_0) {  // decode: conv to the output's input in one launch
    const ActivationBuffer::Target out = activation_target(w.out, 1);
    prefetch(kPrefetchMixerOutput, {&w.out, then});
    const cudaError_t e = delta_net_step(
        {.mixed = mixed, .z = z, .ba = ba, .conv_w = w.conv.as<float>(), .conv_state = conv_state,
         .K = ds_.conv_kernel, .a = w.a.as<float>(), .dt_bias = w.dt_bias.as<float>(), .n_k_heads = ds_.n_k_heads,
         .n_v_heads = ds_.n_v_heads, .d_k = ds_.d_k, .d_v = ds_.d_v, .eps = ds_.rms_eps, .state = state,
         .norm_w = w.out_norm.as<float>(), .norm_eps = config_.rms_eps, .counters = step_counters_.as<unsigned>(),
         .qs = out.qs, .scales = out.scales},
        stream_);
    if (e != cudaErrorNotSupported) {
      MOE_CUDA_CHECK(e);
      product(w.out, out.view, x, true);
      trace_device("attn_out", x, size_t(n) * config_.n_embd);
      return;
    }
  }
  MOE_CUDA_CHECK(conv1d_silu(mixed, n, int(ch), ch, w.conv.as<float>(), ds_.conv_kernel, conv_state, stream_));
  float* o = dn_out_.get(size_t(n) * size_t(vd));
  MOE_CUDA_CHECK(delta_rule({.qkv = mixed, .qkv_stride = ch, .ba = ba, .ba_stride = 2 * nv, .a = w.a.as<float>(),
                              .dt_bias = w.dt_bias.as<float>(), .n = n, .n_k_heads = ds_.n_k_heads,
                              .n_v_heads = ds_.n_v_heads, .d_k = ds_.d_k, .d_v = ds_.d_v, .eps = ds_.rms_eps,
                              .state = state, .out = o},
                             stream_));
  product(w.out, gated_normed(w.out, o, z, w.out_norm, n, ds_.d_v), x, true);
  trace_device("attn_out", x, size_t(n) * config_.n_embd);
}

void Qwen3NextGpu::layers(int n, float* x) {
  for (size_t il = 0; il < layers_.size(); ++il) {
    const Layer& L = layers_[il];
    layer_ = int(il);
    if (L.recurrent) {
      delta_net(L.delta, n, x, &L.moe.router);
    } else {
      attention(L.attn, n, x, &L.moe.router);
    }
    NextNorm next;  // the next layer's input norm and the first matrix that reads it
    if (il + 1 < layers_.size()) {
      const Layer& N = layers_[il + 1];
      next = N.recurrent ? NextNorm{&N.delta.norm, &N.delta.qkv, N.delta.in ? &*N.delta.in : &N.delta.qkv}
                         : NextNorm::of(N.attn);
    }
    moe_ffn(L.moe, L.post_attention_norm, n, x, next);
  }
}

}  // namespace

std::unique_ptr<Model> make_qwen3next_gpu(const gguf::Reader& reader, int device, HybridPlacement placement) {
  return std::make_unique<Qwen3NextGpu>(reader, device, std::move(placement));
}

}  // namespace moe::cuda
