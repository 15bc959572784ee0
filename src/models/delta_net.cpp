#include "models/delta_net.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/cpu/dot_lanes.h"

namespace moe {
namespace {

constexpr int kMaxConvKernel = 8;

float silu(float x) { return x / (1.0f + std::exp(-x)); }
float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }  // ggml's threshold

// x / max(||x||, eps), in place (llama.cpp's l2_norm; HF's rsqrt(sum + eps) differs only for
// vectors near zero).
void l2_normalize(float* x, int n, float eps) {
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += double(x[i]) * x[i];
  const float inv = float(1.0 / std::max(std::sqrt(sum), double(eps)));
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace

void delta_rule_recurrent(const DeltaRuleArgs& a) {
  for (int t = 0; t < a.n; ++t) {
    const float* q = a.q + size_t(t) * a.q_stride;
    const float* k = a.k + size_t(t) * a.k_stride;
    const float* v = a.v + size_t(t) * a.v_stride;
    const float decay = std::exp(a.g[size_t(t) * a.gate_stride]), beta = a.beta[size_t(t) * a.gate_stride];
    float* o = a.o + size_t(t) * a.o_stride;
    // Row j of S is all that value j touches: decay it, read k's value from it, write the
    // correction delta_j k into it, read q's output from it.
    for (int j = 0; j < a.d_v; ++j) {
      float* row = a.state + size_t(j) * a.d_k;
      for (int i = 0; i < a.d_k; ++i) row[i] *= decay;
      const float delta = beta * (v[j] - dot_lanes(row, k, a.d_k));
      for (int i = 0; i < a.d_k; ++i) row[i] += k[i] * delta;
      o[j] = dot_lanes(row, q, a.d_k);
    }
  }
}

void delta_rule_chunked(const DeltaRuleArgs& a, int chunk) {
  const int dk = a.d_k, dv = a.d_v, C = chunk;
  const size_t c = static_cast<size_t>(C);
  std::vector<float> G(c), M(c * c), A(c * c), U(c * dv), Kcd(c * dk), Vnew(c * dv), w(c);
  for (int c0 = 0; c0 < a.n; c0 += C) {
    const int L = std::min(C, a.n - c0);
    auto q = [&](int t) { return a.q + size_t(c0 + t) * a.q_stride; };
    auto k = [&](int t) { return a.k + size_t(c0 + t) * a.k_stride; };
    auto v = [&](int t) { return a.v + size_t(c0 + t) * a.v_stride; };
    auto beta = [&](int t) { return a.beta[size_t(c0 + t) * a.gate_stride]; };
    float cum = 0;  // G_t: the log decay accumulated within the chunk
    for (int t = 0; t < L; ++t) G[size_t(t)] = cum += a.g[size_t(c0 + t) * a.gate_stride];

    // (I + M) U = beta V and (I + M) Kcd = beta exp(G) K by forward substitution, where
    // M[t][s] = beta_t (k_t . k_s) exp(G_t - G_s) for s < t.
    for (int t = 0; t < L; ++t) {
      float* ut = &U[size_t(t) * dv];
      float* kt = &Kcd[size_t(t) * dk];
      const float bt = beta(t), et = std::exp(G[size_t(t)]);
      for (int j = 0; j < dv; ++j) ut[j] = bt * v(t)[j];
      for (int i = 0; i < dk; ++i) kt[i] = bt * et * k(t)[i];
      for (int s = 0; s < t; ++s) {
        const float m = M[size_t(t) * C + s] = bt * dot_lanes(k(t), k(s), dk) * std::exp(G[size_t(t)] - G[size_t(s)]);
        for (int j = 0; j < dv; ++j) ut[j] -= m * U[size_t(s) * dv + j];
        for (int i = 0; i < dk; ++i) kt[i] -= m * Kcd[size_t(s) * dk + i];
      }
    }
    // The chunk's values after what the incoming state already predicts: Vnew = U - Kcd S^T.
    for (int t = 0; t < L; ++t) {
      for (int j = 0; j < dv; ++j) {
        Vnew[size_t(t) * dv + j] = U[size_t(t) * dv + j] - dot_lanes(&Kcd[size_t(t) * dk], a.state + size_t(j) * dk, dk);
      }
    }
    // Outputs: the decayed incoming state read by q, plus attention within the chunk
    // (diagonal included).
    for (int t = 0; t < L; ++t) {
      for (int s = 0; s <= t; ++s) A[size_t(t) * C + s] = dot_lanes(q(t), k(s), dk) * std::exp(G[size_t(t)] - G[size_t(s)]);
      float* o = a.o + size_t(c0 + t) * a.o_stride;
      const float et = std::exp(G[size_t(t)]);
      for (int j = 0; j < dv; ++j) {
        float sum = et * dot_lanes(q(t), a.state + size_t(j) * dk, dk);
        for (int s = 0; s <= t; ++s) sum += A[size_t(t) * C + s] * Vnew[size_t(s) * dv + j];
        o[j] = sum;
      }
    }
    // The state after the chunk: S = exp(G_last) S + sum_s exp(G_last - G_s) Vnew_s k_s^T.
    const float last = G[size_t(L - 1)];
    for (int s = 0; s < L; ++s) w[size_t(s)] = std::exp(last - G[size_t(s)]);
    const float e_last = std::exp(last);
    for (int j = 0; j < dv; ++j) {
      float* row = a.state + size_t(j) * dk;
      for (int i = 0; i < dk; ++i) row[i] *= e_last;
      for (int s = 0; s < L; ++s) {
        const float f = w[size_t(s)] * Vnew[size_t(s) * dv + j];
        const float* ks = k(s);
        for (int i = 0; i < dk; ++i) row[i] += f * ks[i];
      }
    }
  }
}

void delta_net(const DeltaNetLayer& w, const DeltaNetShape& s, int slot, std::span<const float> u,
               std::span<const SeqTokens> seqs, std::span<float> out, ThreadPool& pool, Scratch& scratch, int chunk) {
  const int n = seqs.back().first + seqs.back().count;
  const int ch = s.channels(), kd = s.key_dim(), vd = s.value_dim(), nv = s.n_v_heads, K = s.conv_kernel;
  const int r = s.n_v_heads / s.n_k_heads;  // value heads per key head
  MOE_ASSERT(K >= 2 && K <= kMaxConvKernel);

  // Projections: mixed = [q | k | v] per token (the conv's input), z, and the gate inputs.
  const auto mixed = sized(scratch.conv_in, size_t(n) * ch), z = sized(scratch.z, size_t(n) * vd);
  if (w.fused) {  // legacy ssm_in: regroup [q_g | k_g | v_g | z_g] per key head g
    const auto qkvz = sized(scratch.qkvz, size_t(n) * (ch + vd));
    matmul(w.qkvz, u, n, qkvz, pool);
    const int block = 2 * s.d_k + 2 * r * s.d_v;
    for (int t = 0; t < n; ++t) {
      for (int g = 0; g < s.n_k_heads; ++g) {
        const float* src = qkvz.data() + size_t(t) * (ch + vd) + size_t(g) * block;
        float* m = mixed.data() + size_t(t) * ch;
        std::copy_n(src, s.d_k, m + size_t(g) * s.d_k);
        std::copy_n(src + s.d_k, s.d_k, m + kd + size_t(g) * s.d_k);
        std::copy_n(src + 2 * s.d_k, r * s.d_v, m + 2 * kd + size_t(g) * r * s.d_v);
        std::copy_n(src + 2 * s.d_k + r * s.d_v, r * s.d_v, z.data() + size_t(t) * vd + size_t(g) * r * s.d_v);
      }
    }
  } else {
    matmul(w.qkv, u, n, mixed, pool);
    matmul(w.z, u, n, z, pool);
  }
  const auto ba = sized(scratch.ba, size_t(n) * 2 * nv);
  matmul(w.ba, u, n, ba, pool);
  const auto beta = sized(scratch.beta, size_t(n) * nv), g = sized(scratch.decay, size_t(n) * nv);
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < nv; ++j) {  // grouped per key head: b of its value heads, then a
      const float* blk = ba.data() + size_t(t) * 2 * nv + size_t(j / r) * 2 * r;
      beta[size_t(t) * nv + j] = sigmoid(blk[j % r]);
      g[size_t(t) * nv + j] = w.a[size_t(j)] * softplus(blk[r + j % r] + w.dt_bias[size_t(j)]);
    }
  }

  // Causal depthwise conv over each sequence's tokens, continuing from its conv state; SiLU.
  for (const SeqTokens& st : seqs) {
    float* conv_state = st.seq->recurrent().data() + size_t(slot) * s.state_floats();
    parallel_chunks(pool, size_t(ch), 64, [&](size_t begin, size_t end, int) {
      for (size_t c = begin; c < end; ++c) {
        float hist[kMaxConvKernel];  // the last K - 1 inputs, oldest first
        std::copy_n(conv_state + c * (K - 1), K - 1, hist);
        const float* wc = w.conv.data() + c * K;
        for (int i = 0; i < st.count; ++i) {
          float& x = mixed[size_t(st.first + i) * ch + c];
          float y = 0;
          for (int tap = 0; tap < K - 1; ++tap) y += wc[tap] * hist[tap];
          y += wc[K - 1] * x;
          std::copy(hist + 1, hist + K - 1, hist);
          hist[K - 2] = x;
          x = silu(y);
        }
        std::copy_n(hist, K - 1, conv_state + c * (K - 1));
      }
    });
  }
  // q and k: L2-normed per head; q also scaled by 1/sqrt(d_k).
  const float q_scale = 1.0f / std::sqrt(float(s.d_k));
  for (int t = 0; t < n; ++t) {
    float* m = mixed.data() + size_t(t) * ch;
    for (int h = 0; h < s.n_k_heads; ++h) {
      float* q = m + size_t(h) * s.d_k;
      l2_normalize(q, s.d_k, s.rms_eps);
      for (int i = 0; i < s.d_k; ++i) q[i] *= q_scale;
      l2_normalize(m + kd + size_t(h) * s.d_k, s.d_k, s.rms_eps);
    }
  }

  // The delta rule: one task per (sequence, value head), tokens in order.
  const auto o = sized(scratch.dn_out, size_t(n) * vd);
  pool.parallel_for(seqs.size() * size_t(nv), [&](size_t task, int) {
    const SeqTokens& st = seqs[task / size_t(nv)];
    const int j = int(task % size_t(nv)), kh = j / r;
    float* ssm = st.seq->recurrent().data() + size_t(slot) * s.state_floats() + s.conv_state_floats();
    const float* rows = mixed.data() + size_t(st.first) * ch;
    DeltaRuleArgs a{};
    a.q = rows + size_t(kh) * s.d_k;
    a.k = rows + kd + size_t(kh) * s.d_k;
    a.v = rows + 2 * kd + size_t(j) * s.d_v;
    a.q_stride = a.k_stride = a.v_stride = size_t(ch);
    a.beta = beta.data() + size_t(st.first) * nv + j;
    a.g = g.data() + size_t(st.first) * nv + j;
    a.gate_stride = size_t(nv);
    a.n = st.count;
    a.d_k = s.d_k;
    a.d_v = s.d_v;
    a.state = ssm + size_t(j) * s.d_v * s.d_k;
    a.o = o.data() + size_t(st.first) * vd + size_t(j) * s.d_v;
    a.o_stride = size_t(vd);
    if (chunk > 0 && st.count >= chunk) {
      delta_rule_chunked(a, chunk);
    } else {
      delta_rule_recurrent(a);
    }
  });

  // Gated RMSNorm per value head (norm, then weight, then silu(z)), and the output projection.
  for (size_t h = 0; h < size_t(n) * nv; ++h) {
    const std::span<float> head = o.subspan(h * s.d_v, size_t(s.d_v));
    rms_norm(head, w.norm, s.rms_eps, head);
    const float* zh = z.data() + h * s.d_v;
    for (int i = 0; i < s.d_v; ++i) head[size_t(i)] *= silu(zh[i]);
  }
  matmul(w.out, o, n, out, pool);
}

}  // namespace moe
