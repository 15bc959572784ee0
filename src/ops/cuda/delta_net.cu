// The delta-net's kernels. The state is the big operand (d_v x d_k floats per value head,
// 2 MiB a layer for Qwen3-Next-80B): each warp keeps one row of it in registers for all the
// tokens of a call, so prefill reads and writes the state once, not once a token.
#include <algorithm>

#include "ops/cuda/launch.cuh"
#include "ops/cuda/delta_net.h"
#include "ops/cuda/last_block.cuh"
#include "ops/cuda/quantize_block.cuh"
#include "ops/cuda/warp.cuh"

namespace moe::cuda {
namespace {

constexpr int kMaxConvKernel = 8, kMaxStateDim = 256, kRowsPerBlock = 4;

__device__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// A block takes 32 channels (threadIdx.x) and cuts the tokens into blockDim.y stretches, a
// thread a (channel, stretch), each stretch run in token order with the CPU's sum order (taps
// oldest first). The conv works in place, so every thread first reads the K - 1 inputs before
// its stretch (the state's, before the first token) and the thread of the last stretch the
// inputs that become the new state; only then, past the barrier, are outputs written. A
// prefill of 4096 tokens is then 128 steps a thread instead of 4096 (each step's load goes out
// before the previous token's store, so the steps do not wait on memory one by one).
__global__ void conv1d_silu_kernel(float* x, int n, int channels, int64_t x_stride, const float* __restrict__ w, int K,
                                   float* state) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int c = blockIdx.x * 32 + threadIdx.x, stretch = (n + blockDim.y - 1) / blockDim.y;
  const int t0 = threadIdx.y * stretch, t1 = min(n, t0 + stretch);
  const bool live = c < channels && t0 < n, last = live && t1 == n;
  auto input = [&](int t) {  // token t's input (t < 0: the state's history)
    return t >= 0 ? x[int64_t(t) * x_stride + c] : state[int64_t(c) * (K - 1) + (K - 1) + t];
  };
  float hist[kMaxConvKernel], next_state[kMaxConvKernel];
  if (live) {
    for (int i = 0; i < K - 1; ++i) hist[i] = input(t0 - (K - 1) + i);
    if (last) {
      for (int i = 0; i < K - 1; ++i) next_state[i] = input(n - (K - 1) + i);
    }
  }
  __syncthreads();
  if (!live) return;
  const float* wc = w + int64_t(c) * K;
  float v = x[int64_t(t0) * x_stride + c];
  for (int t = t0; t < t1; ++t) {
    const float next = t + 1 < t1 ? x[int64_t(t + 1) * x_stride + c] : 0.0f;
    float y = 0.0f;
    for (int tap = 0; tap < K - 1; ++tap) y = __fadd_rn(y, __fmul_rn(wc[tap], hist[tap]));
    y = __fadd_rn(y, __fmul_rn(wc[K - 1], v));
    for (int i = 0; i + 1 < K - 1; ++i) hist[i] = hist[i + 1];
    hist[K - 2] = v;
    x[int64_t(t) * x_stride + c] = silu(y);
    v = next;
  }
  if (last) {
    for (int i = 0; i < K - 1; ++i) state[int64_t(c) * (K - 1) + i] = next_state[i];
  }
}

// x / max(||x||, eps) of a warp's vector (kPer values a lane), the CPU's l2_normalize.
template <int kPer>
__device__ void l2_normalize(float (&x)[kPer], int per, float eps) {
  double sum = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    if (i < per) sum += double(x[i]) * x[i];
  }
  const float inv = float(1.0 / fmax(sqrt(warp_sum(sum)), double(eps)));
#pragma unroll
  for (int i = 0; i < kPer; ++i) x[i] *= inv;
}

// The state row a warp keeps for all the tokens of a call (value head h, value j; lane l holds
// columns l, l + 32, ...) and where its inputs are: key head kh, r value heads a key head.
struct StateRow {
  int row, h, j, r, kh, key_dim, per;
  __device__ explicit StateRow(const DeltaRuleBatch& b)
      : row(blockIdx.x * kRowsPerBlock + threadIdx.y),
        h(row / b.d_v),
        j(row % b.d_v),
        r(b.n_v_heads / b.n_k_heads),
        kh(h / r),
        key_dim(b.n_k_heads * b.d_k),
        per(b.d_k / 32) {}
  __device__ bool live(const DeltaRuleBatch& b) const { return row < b.n_v_heads * b.d_v; }
  template <int kPer>
  __device__ void load(const DeltaRuleBatch& b, float (&s)[kPer]) const {
    const float* at = b.state + int64_t(row) * b.d_k + threadIdx.x;
#pragma unroll
    for (int i = 0; i < kPer; ++i) s[i] = i < per ? at[32 * i] : 0.0f;
  }
  template <int kPer>
  __device__ void store(const DeltaRuleBatch& b, const float (&s)[kPer]) const {
    float* at = b.state + int64_t(row) * b.d_k + threadIdx.x;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (i < per) at[32 * i] = s[i];
    }
  }
};

// One warp per state row, each token's inputs prepared on the fly (decode: one launch).
template <int kPer>
__global__ void delta_rule_kernel(DeltaRuleBatch b) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const StateRow w(b);
  if (!w.live(b)) return;
  const int lane = threadIdx.x, row = w.row, h = w.h, j = w.j, r = w.r, kh = w.kh, key_dim = w.key_dim, per = w.per;
  const float q_scale = 1.0f / sqrtf(float(b.d_k));
  const float a = b.a[h], dt_bias = b.dt_bias[h];
  float s[kPer];
  w.load(b, s);

  for (int t = 0; t < b.n; ++t) {
    const float* x = b.qkv + int64_t(t) * b.qkv_stride;
    const float* q_in = x + kh * b.d_k;
    const float* k_in = x + key_dim + kh * b.d_k;
    float q[kPer], k[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      q[i] = i < per ? q_in[lane + 32 * i] : 0.0f;
      k[i] = i < per ? k_in[lane + 32 * i] : 0.0f;
    }
    l2_normalize(q, per, b.eps);
    l2_normalize(k, per, b.eps);
#pragma unroll
    for (int i = 0; i < kPer; ++i) q[i] *= q_scale;
    const float v = x[2 * key_dim + h * b.d_v + j];
    const float* gates = b.ba + int64_t(t) * b.ba_stride + kh * 2 * r;
    const float beta = sigmoid(gates[h % r]);
    const float decay = expf(a * softplus(gates[r + h % r] + dt_bias));

    float sk = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      s[i] *= decay;
      sk += s[i] * k[i];
    }
    const float delta = beta * (v - warp_sum(sk));
    float o = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      s[i] += k[i] * delta;
      o += s[i] * q[i];
    }
    o = warp_sum(o);
    if (lane == 0) b.out[int64_t(t) * b.n_v_heads * b.d_v + row] = o;
  }
  w.store(b, s);
}

// Several tokens: their inputs prepared first, in parallel and in place
// (delta_rule_prepared_kernel below then runs the recurrence alone): warp w of the grid L2-norms the q or k vector of one
// (token, key head) (q also scaled), with the arithmetic of delta_rule_kernel; thread i
// turns one (token, value head)'s b and a_in into beta and the decay exp(g).
template <int kPer>
__global__ void delta_prepare_kernel(DeltaRuleBatch b) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int lane = threadIdx.x % 32, per = b.d_k / 32, key_dim = b.n_k_heads * b.d_k, r = b.n_v_heads / b.n_k_heads;
  const int64_t threads = int64_t(gridDim.x) * blockDim.x, id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t vec = id / 32; vec < int64_t(b.n) * 2 * b.n_k_heads; vec += threads / 32) {
    const int64_t t = vec / (2 * b.n_k_heads);
    const int which = int(vec % (2 * b.n_k_heads)) / b.n_k_heads, kh = int(vec % b.n_k_heads);  // 0: q, 1: k
    float* at = b.qkv + t * b.qkv_stride + which * key_dim + kh * b.d_k;
    float x[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) x[i] = i < per ? at[lane + 32 * i] : 0.0f;
    l2_normalize(x, per, b.eps);
    const float q_scale = which == 0 ? 1.0f / sqrtf(float(b.d_k)) : 1.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (i < per) at[lane + 32 * i] = which == 0 ? x[i] * q_scale : x[i];
    }
  }
  for (int64_t i = id; i < int64_t(b.n) * b.n_v_heads; i += threads) {
    const int64_t t = i / b.n_v_heads;
    const int h = int(i % b.n_v_heads);
    float* gates = b.ba + t * b.ba_stride + (h / r) * 2 * r;
    const float beta = sigmoid(gates[h % r]);
    const float decay = expf(b.a[h] * softplus(gates[r + h % r] + b.dt_bias[h]));
    gates[h % r] = beta;
    gates[r + h % r] = decay;
  }
}

// The recurrence over prepared inputs, one warp per state row. A token's
// output needs S_new q = decay (S q) + delta (k . q), so the three sums S k, S q and k . q of
// the old state are one reduction (their shuffles interleaved), not two in a row; the next
// token's inputs are loaded while this one's are used.
template <int kPer>
__global__ void delta_rule_prepared_kernel(DeltaRuleBatch b) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const StateRow w(b);
  if (!w.live(b)) return;
  const int lane = threadIdx.x, row = w.row, h = w.h, j = w.j, r = w.r, kh = w.kh, key_dim = w.key_dim, per = w.per;
  float s[kPer];
  w.load(b, s);
  struct Inputs {
    float q[kPer], k[kPer], v, beta, decay;
  };
  auto load = [&](int t, Inputs& in) {
    const float* x = b.qkv + int64_t(t) * b.qkv_stride;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      in.q[i] = i < per ? x[kh * b.d_k + lane + 32 * i] : 0.0f;
      in.k[i] = i < per ? x[key_dim + kh * b.d_k + lane + 32 * i] : 0.0f;
    }
    in.v = x[2 * key_dim + h * b.d_v + j];
    const float* gates = b.ba + int64_t(t) * b.ba_stride + kh * 2 * r;
    in.beta = gates[h % r];
    in.decay = gates[r + h % r];
  };
  Inputs cur, next;
  load(0, cur);
  for (int t = 0; t < b.n; ++t) {
    if (t + 1 < b.n) load(t + 1, next);
    float sk = 0.0f, sq = 0.0f, kq = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      sk += s[i] * cur.k[i];
      sq += s[i] * cur.q[i];
      kq += cur.k[i] * cur.q[i];
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
      sk += __shfl_xor_sync(0xFFFFFFFFu, sk, off);
      sq += __shfl_xor_sync(0xFFFFFFFFu, sq, off);
      kq += __shfl_xor_sync(0xFFFFFFFFu, kq, off);
    }
    const float delta = cur.beta * (cur.v - cur.decay * sk);
#pragma unroll
    for (int i = 0; i < kPer; ++i) s[i] = s[i] * cur.decay + cur.k[i] * delta;
    if (lane == 0) b.out[int64_t(t) * b.n_v_heads * b.d_v + row] = cur.decay * sq + delta * kq;
    cur = next;
  }
  w.store(b, s);
}

// One warp per row: the sum of squares in double, as the CPU's rms_norm.
__global__ void gated_rms_norm_kernel(const float* o, const float* __restrict__ z, const float* __restrict__ w,
                                      float eps, int64_t rows, int width, float* out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  if (row >= rows) return;
  const int lane = threadIdx.x;
  const float* x = o + row * width;
  double sum = 0;
  for (int i = lane; i < width; i += 32) sum += double(x[i]) * x[i];
  const float scale = float(1.0 / sqrt(warp_sum(sum) / double(width) + eps));
  for (int i = lane; i < width; i += 32) out[row * width + i] = x[i] * scale * w[i] * silu(z[row * width + i]);
}

// delta_net_step: a block of kStepWarps warps per value head h, warp w keeping state rows
// w, w + 32, ... (kStepRows of them) in registers. The conv of the head's channels (key head
// kh's q and k, its own v) goes to shared memory; the r value heads of a key head share that
// key head's q and k channels, so the last of their blocks to arrive writes those channels'
// conv history (the others have read it by then), each block its own v channels'.
constexpr int kStepWarps = 32, kStepRows = 4, kMaxStepDim = 32 * kStepRows;
static_assert(2 * kMaxStateDim + kMaxStepDim <= 32 * kStepWarps, "a thread a conv channel");

template <int kPer>
__global__ void __launch_bounds__(32 * kStepWarps) delta_net_step_kernel(DeltaNetStep p) {
  __shared__ float q[kMaxStateDim], k[kMaxStateDim], v[kMaxStepDim], o[kMaxStepDim];
  const int h = blockIdx.x, lane = threadIdx.x, warp = threadIdx.y, tid = 32 * warp + lane;
  const int r = p.n_v_heads / p.n_k_heads, kh = h / r, key_dim = p.n_k_heads * p.d_k, per = p.d_k / 32;
  const int K = p.K, n_ch = 2 * p.d_k + p.d_v;
  // This thread's channel: q, k of key head kh, then v of head h.
  const int c = tid < p.d_k       ? kh * p.d_k + tid
                : tid < 2 * p.d_k ? key_dim + kh * p.d_k + (tid - p.d_k)
                                  : 2 * key_dim + h * p.d_v + (tid - 2 * p.d_k);
  // Loaded while the previous launch runs (it does not write them): the state rows, the conv
  // history and taps.
  float s[kStepRows][kPer];
#pragma unroll
  for (int rr = 0; rr < kStepRows; ++rr) {
    const int j = warp + 32 * rr;
    const float* at = p.state + (int64_t(h) * p.d_v + j) * p.d_k + lane;
#pragma unroll
    for (int i = 0; i < kPer; ++i) s[rr][i] = j < p.d_v && i < per ? at[32 * i] : 0.0f;
  }
  // (Every index below is a constant of an unrolled loop: the arrays stay in registers.)
  float hist[kMaxConvKernel - 1], taps[kMaxConvKernel - 1], last_tap = 0.0f;
  if (tid < n_ch) {
#pragma unroll
    for (int i = 0; i < kMaxConvKernel - 1; ++i) {
      if (i < K - 1) hist[i] = p.conv_state[int64_t(c) * (K - 1) + i], taps[i] = p.conv_w[int64_t(c) * K + i];
    }
    last_tap = p.conv_w[int64_t(c) * K + K - 1];
  }
  // Warp w < d_v / 32 norms and quantizes values 32 w .. 32 w + 31 of the head at the end.
  const bool norms = warp < p.d_v / 32;
  const int ni = 32 * warp + lane;
  const float norm_w = norms ? p.norm_w[ni] : 0.0f;
  wait_for_previous_kernels();
  allow_next_kernel();
  const float gate = norms ? silu(p.z[h * p.d_v + ni]) : 0.0f;

  // The conv (conv1d_silu's arithmetic, taps oldest first).
  float x = 0.0f;
  if (tid < n_ch) {
    x = p.mixed[c];
    float y = 0.0f;
#pragma unroll
    for (int tap = 0; tap < kMaxConvKernel - 1; ++tap) {
      if (tap < K - 1) y = __fadd_rn(y, __fmul_rn(taps[tap], hist[tap]));
    }
    const float out = silu(__fadd_rn(y, __fmul_rn(last_tap, x)));
    if (tid < p.d_k) {
      q[tid] = out;
    } else if (tid < 2 * p.d_k) {
      k[tid - p.d_k] = out;
    } else {
      v[tid - 2 * p.d_k] = out;
    }
  }
  // (r is the same for every thread of the block: all of them reach the counter.)
  const bool last = r == 1 || last_to_arrive(p.counters + kh, unsigned(r));
  if (tid < n_ch && (tid >= 2 * p.d_k || last)) {  // the history moves on by one
#pragma unroll
    for (int i = 0; i < kMaxConvKernel - 1; ++i) {
      const bool older = i + 1 < kMaxConvKernel - 1 && i + 1 < K - 1;  // (the first test is the constant one)
      if (i < K - 1) p.conv_state[int64_t(c) * (K - 1) + i] = older ? hist[i + 1] : x;
    }
  }
  __syncthreads();  // q, k, v in shared memory

  // Warp 0 L2-norms (and scales) q, warp 1 k: delta_rule_kernel's arithmetic.
  if (warp < 2) {
    float* vec = warp == 0 ? q : k;
    float t[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) t[i] = i < per ? vec[lane + 32 * i] : 0.0f;
    l2_normalize(t, per, p.eps);
    const float q_scale = 1.0f / sqrtf(float(p.d_k));
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (warp == 0) t[i] *= q_scale;
      if (i < per) vec[lane + 32 * i] = t[i];
    }
  }
  const float* gates = p.ba + kh * 2 * r;
  const float beta = sigmoid(gates[h % r]);
  const float decay = expf(p.a[h] * softplus(gates[r + h % r] + p.dt_bias[h]));
  __syncthreads();

  float qr[kPer], kr[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) qr[i] = i < per ? q[lane + 32 * i] : 0.0f, kr[i] = i < per ? k[lane + 32 * i] : 0.0f;
#pragma unroll
  for (int rr = 0; rr < kStepRows; ++rr) {
    const int j = warp + 32 * rr;
    if (j >= p.d_v) continue;  // (not break: the loop stays unrolled, s in registers)
    float sk = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      s[rr][i] *= decay;
      sk += s[rr][i] * kr[i];
    }
    const float delta = beta * (v[j] - warp_sum(sk));
    float out = 0.0f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      s[rr][i] += kr[i] * delta;
      out += s[rr][i] * qr[i];
    }
    out = warp_sum(out);
    if (lane == 0) o[j] = out;
    float* at = p.state + (int64_t(h) * p.d_v + j) * p.d_k + lane;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      if (i < per) at[32 * i] = s[rr][i];
    }
  }
  __syncthreads();  // the head's output in shared memory

  // The gated RMSNorm (gated_norm_quantize_kernel's arithmetic), each of these warps
  // quantizing its 32 values of the head as one Q8_0 block.
  if (norms) {
    double sum = 0;
    for (int i = lane; i < p.d_v; i += 32) sum += double(o[i]) * o[i];
    const float scale = float(1.0 / sqrt(warp_sum(sum) / double(p.d_v) + p.norm_eps));
    const float normed = o[ni] * scale * norm_w * gate;
    const int64_t at = int64_t(h) * p.d_v + 32 * warp;
    quantize_lanes_q8_0(normed, p.qs + at, p.scales + at / 32);
  }
}

}  // namespace

cudaError_t conv1d_silu(float* x, int n, int channels, int64_t x_stride, const float* w, int K, float* state,
                        cudaStream_t stream) {
  if (K < 2 || K > kMaxConvKernel) return cudaErrorInvalidValue;
  if (n == 0 || channels == 0) return cudaSuccess;
  constexpr int kMaxStretches = 32;  // a block of 32 channels x up to 32 stretches of the tokens
  const dim3 block(32, unsigned(std::min(n, kMaxStretches))), grid(unsigned((channels + 31) / 32));
  launch(conv1d_silu_kernel, grid, block, 0, stream, x, n, channels, x_stride, w, K, state);
  return cudaGetLastError();
}

cudaError_t delta_rule(const DeltaRuleBatch& b, cudaStream_t stream) {
  if (b.d_k % 32 != 0 || b.d_k > kMaxStateDim || b.n_k_heads <= 0 || b.n_v_heads % b.n_k_heads != 0) {
    return cudaErrorInvalidValue;
  }
  if (b.n == 0) return cudaSuccess;
  const int rows = b.n_v_heads * b.d_v;
  const dim3 block(32, kRowsPerBlock), grid(unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  if (b.n == 1) {  // decode: one launch, the inputs prepared on the fly
    if (b.d_k <= 128) {
      launch(delta_rule_kernel<4>, grid, block, 0, stream, b);
    } else {
      launch(delta_rule_kernel<8>, grid, block, 0, stream, b);
    }
    return cudaGetLastError();
  }
  const int64_t work = std::max<int64_t>(int64_t(b.n) * 2 * b.n_k_heads * 32, int64_t(b.n) * b.n_v_heads);
  const unsigned prepare_blocks = unsigned(std::min<int64_t>(4096, (work + 255) / 256));
  if (b.d_k <= 128) {
    launch(delta_prepare_kernel<4>, prepare_blocks, 256, 0, stream, b);
    launch(delta_rule_prepared_kernel<4>, grid, block, 0, stream, b);
  } else {
    launch(delta_prepare_kernel<8>, prepare_blocks, 256, 0, stream, b);
    launch(delta_rule_prepared_kernel<8>, grid, block, 0, stream, b);
  }
  return cudaGetLastError();
}

cudaError_t delta_net_step(const DeltaNetStep& s, cudaStream_t stream) {
  if (s.d_k % 32 != 0 || s.d_k > kMaxStateDim || s.d_v % 32 != 0 || s.d_v > kMaxStepDim || s.K < 2 ||
      s.K > kMaxConvKernel || s.n_k_heads <= 0 || s.n_v_heads % s.n_k_heads != 0 || !s.counters) {
    return cudaErrorNotSupported;
  }
  const dim3 block(32, kStepWarps);
  if (s.d_k <= 128) {
    launch(delta_net_step_kernel<4>, unsigned(s.n_v_heads), block, 0, stream, s);
  } else {
    launch(delta_net_step_kernel<8>, unsigned(s.n_v_heads), block, 0, stream, s);
  }
  return cudaGetLastError();
}

cudaError_t gated_rms_norm(const float* o, const float* z, const float* w, float eps, int64_t rows, int width,
                           float* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const dim3 block(32, kRowsPerBlock), grid(unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  launch(gated_rms_norm_kernel, grid, block, 0, stream, o, z, w, eps, rows, width, out);
  return cudaGetLastError();
}

}  // namespace moe::cuda
