#pragma once
// A deliberately naive forward pass for Qwen3 / Qwen3-MoE in double precision, written from the
// math in reference/qwen-architectures.md section 4.2 with plain loops over dequantized
// weights: no KV cache blocks, no batching, no threads, no SIMD. The engine must agree with it.
#include <cmath>
#include <string>
#include <vector>

#include "gguf/reader.h"
#include "ops/cpu/quantize.h"

namespace moe::test {

class ReferenceModel {
 public:
  explicit ReferenceModel(const gguf::Reader& r) : r_(r) {
    const auto& m = r.metadata();
    arch_ = std::string(r.architecture());
    const std::string p = arch_ + ".";
    n_layer_ = int(m.get_uint(p + "block_count"));
    n_embd_ = int(m.get_uint(p + "embedding_length"));
    n_head_ = int(m.get_uint(p + "attention.head_count"));
    n_head_kv_ = int(m.get_uint(p + "attention.head_count_kv"));
    head_dim_ = int(m.get_uint(p + "attention.key_length"));
    eps_ = m.get_double(p + "attention.layer_norm_rms_epsilon");
    base_ = m.get_double(p + "rope.freq_base");
    n_rot_ = int(m.get_uint(p + "rope.dimension_count", uint64_t(head_dim_)));
    if (arch_ == "qwen3moe" || arch_ == "qwen3next") {
      n_expert_ = int(m.get_uint(p + "expert_count"));
      n_used_ = int(m.get_uint(p + "expert_used_count"));
    }
  }

  // Logits of every position of `tokens`, [n][n_vocab].
  std::vector<std::vector<double>> forward(const std::vector<int>& tokens) const {
    const int n = int(tokens.size());
    const auto embd = matrix("token_embd.weight");
    std::vector<std::vector<double>> x(n);
    for (int t = 0; t < n; ++t) x[t] = embd[tokens[t]];
    for (int il = 0; il < n_layer_; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      const auto wq = matrix(b + "attn_q.weight"), wk = matrix(b + "attn_k.weight"), wv = matrix(b + "attn_v.weight");
      const auto wo = matrix(b + "attn_output.weight");
      const auto qn = vec(b + "attn_q_norm.weight"), kn = vec(b + "attn_k_norm.weight");
      std::vector<std::vector<double>> q(n), k(n), v(n);
      for (int t = 0; t < n; ++t) {
        const auto u = rms(x[t], vec(b + "attn_norm.weight"));
        q[t] = mul(wq, u);
        k[t] = mul(wk, u);
        v[t] = mul(wv, u);
        for (int h = 0; h < n_head_; ++h) head_norm_rope(q[t], h, qn, t);
        for (int h = 0; h < n_head_kv_; ++h) head_norm_rope(k[t], h, kn, t);
      }
      for (int t = 0; t < n; ++t) {
        std::vector<double> mixed(size_t(n_head_) * head_dim_, 0.0);
        for (int h = 0; h < n_head_; ++h) {
          const int kvh = h / (n_head_ / n_head_kv_);
          std::vector<double> s(t + 1);
          double mx = -1e300;
          for (int p = 0; p <= t; ++p) {
            double d = 0;
            for (int i = 0; i < head_dim_; ++i) d += q[t][h * head_dim_ + i] * k[p][kvh * head_dim_ + i];
            s[p] = d / std::sqrt(double(head_dim_));
            mx = std::max(mx, s[p]);
          }
          double sum = 0;
          for (auto& e : s) sum += e = std::exp(e - mx);
          for (int p = 0; p <= t; ++p) {
            for (int i = 0; i < head_dim_; ++i) mixed[h * head_dim_ + i] += s[p] / sum * v[p][kvh * head_dim_ + i];
          }
        }
        add(x[t], mul(wo, mixed));
      }
      for (int t = 0; t < n; ++t) add(x[t], ffn(b, rms(x[t], vec(b + "ffn_norm.weight"))));
    }
    const auto out = matrix(r_.find_tensor("output.weight") ? "output.weight" : "token_embd.weight");
    std::vector<std::vector<double>> logits(n);
    for (int t = 0; t < n; ++t) logits[t] = mul(out, rms(x[t], vec("output_norm.weight")));
    return logits;
  }

 protected:
  using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

  // Rows of a tensor (or of one expert's slice of a 3-D tensor), dequantized.
  Matrix matrix(const std::string& name, int expert = 0) const {
    const auto& t = r_.tensor(name);
    const size_t rows = size_t(t.ne[1]), cols = size_t(t.ne[0]), rb = t.row_bytes();
    Matrix m(rows, std::vector<double>(cols));
    std::vector<float> row(cols);
    for (size_t i = 0; i < rows; ++i) {
      dequantize_row(t.type, t.data.subspan((size_t(expert) * rows + i) * rb, rb), row);
      for (size_t j = 0; j < cols; ++j) m[i][j] = row[j];
    }
    return m;
  }
  std::vector<double> vec(const std::string& name) const { return matrix(name)[0]; }
  static std::vector<double> mul(const Matrix& w, const std::vector<double>& x) {
    std::vector<double> y(w.size(), 0.0);
    for (size_t i = 0; i < w.size(); ++i) {
      for (size_t j = 0; j < x.size(); ++j) y[i] += w[i][j] * x[j];
    }
    return y;
  }
  static void add(std::vector<double>& x, const std::vector<double>& d) {
    for (size_t i = 0; i < x.size(); ++i) x[i] += d[i];
  }
  std::vector<double> rms(const std::vector<double>& x, const std::vector<double>& w) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double s = 1.0 / std::sqrt(ss / double(x.size()) + eps_);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
    return y;
  }
  void head_norm_rope(std::vector<double>& v, int h, const std::vector<double>& w, int pos) const {
    std::vector<double> head(v.begin() + h * head_dim_, v.begin() + (h + 1) * head_dim_);
    head = rms(head, w);
    const int half = n_rot_ / 2;  // only the first n_rot dims rotate (Qwen3-Next: 64 of 256)
    for (int i = 0; i < half; ++i) {
      const double th = pos * std::pow(base_, -2.0 * i / n_rot_);
      const double a = head[i], b = head[i + half];
      head[i] = a * std::cos(th) - b * std::sin(th);
      head[i + half] = a * std::sin(th) + b * std::cos(th);
    }
    std::copy(head.begin(), head.end(), v.begin() + h * head_dim_);
  }
  static double silu(double x) { return x / (1 + std::exp(-x)); }
  std::vector<double> swiglu_ffn(const Matrix& g, const Matrix& u, const Matrix& d, const std::vector<double>& x) const {
    auto a = mul(g, x);
    const auto b = mul(u, x);
    for (size_t i = 0; i < a.size(); ++i) a[i] = silu(a[i]) * b[i];
    return mul(d, a);
  }
  std::vector<double> ffn(const std::string& b, const std::vector<double>& x) const {
    if (arch_ == "qwen3next") return moe(b, x);
    if (arch_ == "qwen3") {
      return swiglu_ffn(matrix(b + "ffn_gate.weight"), matrix(b + "ffn_up.weight"), matrix(b + "ffn_down.weight"), x);
    }
    return moe(b, x);
  }
  // Routed experts (softmax, top-k, renormalised), plus Qwen3-Next's gated shared expert.
  std::vector<double> moe(const std::string& b, const std::vector<double>& x) const {
    auto p = mul(matrix(b + "ffn_gate_inp.weight"), x);
    const double mx = *std::max_element(p.begin(), p.end());
    double sum = 0;
    for (auto& e : p) sum += e = std::exp(e - mx);
    for (auto& e : p) e /= sum;
    std::vector<int> order(p.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return p[a] > p[c]; });
    double selected = 0;
    for (int i = 0; i < n_used_; ++i) selected += p[order[i]];
    std::vector<double> out(x.size(), 0.0);
    for (int i = 0; i < n_used_; ++i) {
      const int e = order[i];
      const auto y = swiglu_ffn(matrix(b + "ffn_gate_exps.weight", e), matrix(b + "ffn_up_exps.weight", e),
                                matrix(b + "ffn_down_exps.weight", e), x);
      for (size_t j = 0; j < out.size(); ++j) out[j] += p[e] / selected * y[j];
    }
    if (r_.find_tensor(b + "ffn_gate_inp_shexp.weight")) {
      const auto wg = vec(b + "ffn_gate_inp_shexp.weight");
      double gate = 0;
      for (size_t i = 0; i < x.size(); ++i) gate += wg[i] * x[i];
      const auto y = swiglu_ffn(matrix(b + "ffn_gate_shexp.weight"), matrix(b + "ffn_up_shexp.weight"),
                                matrix(b + "ffn_down_shexp.weight"), x);
      for (size_t j = 0; j < out.size(); ++j) out[j] += y[j] / (1 + std::exp(-gate));
    }
    return out;
  }

  const gguf::Reader& r_;
  std::string arch_;
  int n_layer_ = 0, n_embd_ = 0, n_head_ = 0, n_head_kv_ = 0, head_dim_ = 0, n_rot_ = 0, n_expert_ = 0, n_used_ = 0;
  double eps_ = 0, base_ = 0;
};

}  // namespace moe::test
