#pragma once
// A naive double-precision Qwen3-Next forward pass, written from reference/qwen-architectures.md
// sections 2.3-2.6 in HF's formulation: the delta-net state S is d_k x d_v per value head,
// value head j reads key head j / (n_v / n_k), tokens run one at a time through the
// recurrence; split-layout files only (attn_qkv + attn_gate). The engine must agree with it.
#include "reference_forward.h"

namespace moe::test {

class ReferenceQwen3Next : public ReferenceModel {
 public:
  explicit ReferenceQwen3Next(const gguf::Reader& r) : ReferenceModel(r) {
    const auto& m = r.metadata();
    nk_ = int(m.get_uint("qwen3next.ssm.group_count"));
    nv_ = int(m.get_uint("qwen3next.ssm.time_step_rank"));
    dk_ = int(m.get_uint("qwen3next.ssm.state_size"));
    dv_ = int(m.get_uint("qwen3next.ssm.inner_size")) / nv_;
    kernel_ = int(m.get_uint("qwen3next.ssm.conv_kernel"));
    interval_ = int(m.get_uint("qwen3next.full_attention_interval", 4));
  }

  std::vector<std::vector<double>> forward(const std::vector<int>& tokens) const {
    const int n = int(tokens.size());
    const auto embd = matrix("token_embd.weight");
    std::vector<std::vector<double>> x(n);
    for (int t = 0; t < n; ++t) x[t] = embd[tokens[t]];
    for (int il = 0; il < n_layer_; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      std::vector<std::vector<double>> u(n);
      for (int t = 0; t < n; ++t) u[t] = rms(x[t], vec(b + "attn_norm.weight"));
      const auto mixed = (il + 1) % interval_ != 0 ? delta_net(b, u) : gated_attention(b, u);
      for (int t = 0; t < n; ++t) add(x[t], mixed[t]);
      for (int t = 0; t < n; ++t) add(x[t], moe(b, rms(x[t], vec(b + "post_attention_norm.weight"))));
    }
    const auto out = matrix("output.weight");
    std::vector<std::vector<double>> logits(n);
    for (int t = 0; t < n; ++t) logits[t] = mul(out, rms(x[t], vec("output_norm.weight")));
    return logits;
  }

 private:
  static double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

  std::vector<std::vector<double>> gated_attention(const std::string& b, const std::vector<std::vector<double>>& u) const {
    const int n = int(u.size()), hd = head_dim_;
    const auto wq = matrix(b + "attn_q.weight"), wk = matrix(b + "attn_k.weight"), wv = matrix(b + "attn_v.weight");
    const auto wo = matrix(b + "attn_output.weight");
    const auto qn = vec(b + "attn_q_norm.weight"), kn = vec(b + "attn_k_norm.weight");
    std::vector<std::vector<double>> q(n), gate(n), k(n), v(n), out(n);
    for (int t = 0; t < n; ++t) {
      const auto qg = mul(wq, u[t]);  // per head: hd query values, then hd gate values
      for (int h = 0; h < n_head_; ++h) {
        q[t].insert(q[t].end(), qg.begin() + 2 * h * hd, qg.begin() + (2 * h + 1) * hd);
        gate[t].insert(gate[t].end(), qg.begin() + (2 * h + 1) * hd, qg.begin() + (2 * h + 2) * hd);
      }
      k[t] = mul(wk, u[t]);
      v[t] = mul(wv, u[t]);
      for (int h = 0; h < n_head_; ++h) head_norm_rope(q[t], h, qn, t);
      for (int h = 0; h < n_head_kv_; ++h) head_norm_rope(k[t], h, kn, t);
    }
    for (int t = 0; t < n; ++t) {
      std::vector<double> mixed(size_t(n_head_) * hd, 0.0);
      for (int h = 0; h < n_head_; ++h) {
        const int kvh = h / (n_head_ / n_head_kv_);
        std::vector<double> s(t + 1);
        double mx = -1e300, sum = 0;
        for (int p = 0; p <= t; ++p) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[p][kvh * hd + i];
          mx = std::max(mx, s[p] = d / std::sqrt(double(hd)));
        }
        for (auto& e : s) sum += e = std::exp(e - mx);
        for (int p = 0; p <= t; ++p) {
          for (int i = 0; i < hd; ++i) mixed[h * hd + i] += s[p] / sum * v[p][kvh * hd + i];
        }
      }
      for (size_t i = 0; i < mixed.size(); ++i) mixed[i] *= sigmoid(gate[t][i]);
      out[t] = mul(wo, mixed);
    }
    return out;
  }

  std::vector<std::vector<double>> delta_net(const std::string& b, const std::vector<std::vector<double>>& u) const {
    const int n = int(u.size()), kd = nk_ * dk_, vd = nv_ * dv_, ch = 2 * kd + vd, r = nv_ / nk_;
    const auto wqkv = matrix(b + "attn_qkv.weight"), wz = matrix(b + "attn_gate.weight");
    const auto wba = matrix(b + "ssm_ba.weight"), wout = matrix(b + "ssm_out.weight");
    const auto conv = matrix(b + "ssm_conv1d.weight");  // [ch][kernel]
    const auto a_log_neg = vec(b + "ssm_a"), dt = vec(b + "ssm_dt.bias"), norm = vec(b + "ssm_norm.weight");
    std::vector<std::vector<double>> in(n), out(n);
    for (int t = 0; t < n; ++t) in[t] = mul(wqkv, u[t]);
    std::vector<std::vector<std::vector<double>>> S(nv_, std::vector<std::vector<double>>(dk_, std::vector<double>(dv_)));
    for (int t = 0; t < n; ++t) {
      std::vector<double> c(ch);
      for (int i = 0; i < ch; ++i) {  // causal conv: taps on tokens t - kernel + 1 .. t (zero before 0)
        double y = 0;
        for (int tap = 0; tap < kernel_; ++tap) {
          const int src = t - kernel_ + 1 + tap;
          if (src >= 0) y += conv[i][tap] * in[src][i];
        }
        c[i] = silu(y);
      }
      auto l2 = [&](int off) {
        double ss = 0;
        for (int i = 0; i < dk_; ++i) ss += c[off + i] * c[off + i];
        const double inv = 1 / std::max(std::sqrt(ss), eps_);
        for (int i = 0; i < dk_; ++i) c[off + i] *= inv;
      };
      for (int h = 0; h < nk_; ++h) l2(h * dk_), l2(kd + h * dk_);
      const auto z = mul(wz, u[t]), ba = mul(wba, u[t]);
      std::vector<double> y(vd);
      for (int j = 0; j < nv_; ++j) {
        const int g = j / r, i_in = j % r, kh = g;
        const double beta = sigmoid(ba[2 * r * g + i_in]);
        const double a_in = ba[2 * r * g + r + i_in] + dt[j];
        const double decay = std::exp(a_log_neg[j] * (a_in > 20 ? a_in : std::log1p(std::exp(a_in))));
        const double* q = &c[kh * dk_];
        const double* k = &c[kd + kh * dk_];
        const double* v = &c[2 * kd + j * dv_];
        auto& s = S[j];
        for (auto& row : s) {
          for (double& e : row) e *= decay;
        }
        for (int jv = 0; jv < dv_; ++jv) {
          double kv = 0;
          for (int i = 0; i < dk_; ++i) kv += s[i][jv] * k[i];
          const double delta = beta * (v[jv] - kv);
          for (int i = 0; i < dk_; ++i) s[i][jv] += k[i] * delta;
        }
        std::vector<double> o(dv_, 0.0);
        for (int jv = 0; jv < dv_; ++jv) {
          for (int i = 0; i < dk_; ++i) o[jv] += s[i][jv] * q[i] / std::sqrt(double(dk_));
        }
        const auto normed = rms(o, norm);
        for (int jv = 0; jv < dv_; ++jv) y[j * dv_ + jv] = normed[jv] * silu(z[j * dv_ + jv]);
      }
      out[t] = mul(wout, y);
    }
    return out;
  }

  int nk_ = 0, nv_ = 0, dk_ = 0, dv_ = 0, kernel_ = 0, interval_ = 4;
};

}  // namespace moe::test

namespace moe::test {

// The reference logits for any supported architecture.
inline std::vector<std::vector<double>> reference_logits(const gguf::Reader& r, const std::vector<int>& tokens) {
  if (r.architecture() == "qwen3next") return ReferenceQwen3Next(r).forward(tokens);
  return ReferenceModel(r).forward(tokens);
}

}  // namespace moe::test
