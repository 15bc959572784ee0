#include "models/blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>

#include "core/error.h"
#include "core/quant_blocks.h"
#include "ops/cpu/attend.h"
#include "ops/cpu/quantize.h"
#include "ops/cpu/vec_dot.h"

namespace moe {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void rms_norm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> out) {
  const size_t width = w.size();
  MOE_ASSERT(x.size() % width == 0 && out.size() == x.size());
  for (size_t r = 0; r < x.size() / width; ++r) {
    const float* xr = x.data() + r * width;
    float* yr = out.data() + r * width;
    double sum = 0;  // double: the scale must not depend on summation order noise
    for (size_t i = 0; i < width; ++i) sum += double(xr[i]) * xr[i];
    const float scale = float(1.0 / std::sqrt(sum / double(width) + eps));
    for (size_t i = 0; i < width; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

void rope_neox(std::span<float> head, int n_rot, int64_t pos, float base) {
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const double theta = double(pos) * std::pow(double(base), -2.0 * i / n_rot);
    const float c = float(std::cos(theta)), s = float(std::sin(theta));
    const float a = head[i], b = head[i + half];
    head[i] = a * c - b * s;
    head[i + half] = a * s + b * c;
  }
}

void attention(const AttentionLayer& w, const AttentionShape& s, int cache_layer, std::span<const float> u,
               std::span<const SeqTokens> seqs, std::span<float> out, ThreadPool& pool, Scratch& scratch) {
  const int hd = s.head_dim;
  const size_t q_dim = size_t(s.n_head) * hd, kv_dim = size_t(s.n_head_kv) * hd;
  const int n = seqs.back().first + seqs.back().count;
  const auto q = sized(scratch.q, n * q_dim), k = sized(scratch.k, n * kv_dim), v = sized(scratch.v, n * kv_dim);
  std::span<float> gate;
  if (s.gated) {  // each head's query and output gate come out side by side: split them
    const auto qg = sized(scratch.qg, 2 * n * q_dim);
    gate = sized(scratch.gate, n * q_dim);
    matmul(w.q, u, n, qg, pool);
    for (size_t h = 0; h < size_t(n) * s.n_head; ++h) {
      std::copy_n(qg.begin() + ptrdiff_t(2 * h * hd), hd, q.begin() + ptrdiff_t(h * hd));
      std::copy_n(qg.begin() + ptrdiff_t((2 * h + 1) * hd), hd, gate.begin() + ptrdiff_t(h * hd));
    }
  } else {
    matmul(w.q, u, n, q, pool);
  }
  matmul(w.k, u, n, k, pool);
  matmul(w.v, u, n, v, pool);

  // Per token: its sequence, position, and where that sequence's keys start in `keys` below.
  struct TokenPlace {
    int64_t pos;
    size_t kv_begin;
  };
  std::vector<TokenPlace> places(static_cast<size_t>(n));
  size_t cached = 0;  // positions of all sequences together
  for (const SeqTokens& st : seqs) {
    SequenceState& seq = *st.seq;
    const int64_t pos0 = seq.length() - st.count;
    for (int i = 0; i < st.count; ++i) {
      const int t = st.first + i;
      places[size_t(t)] = {pos0 + i, cached};
      for (int h = 0; h < s.n_head; ++h) {
        std::span<float> head(q.data() + t * q_dim + size_t(h) * hd, size_t(hd));
        rms_norm(head, w.q_norm, s.rms_eps, head);
        rope_neox(head, s.n_rot, pos0 + i, s.rope_base);
      }
      for (int h = 0; h < s.n_head_kv; ++h) {
        std::span<float> head(k.data() + t * kv_dim + size_t(h) * hd, size_t(hd));
        rms_norm(head, w.k_norm, s.rms_eps, head);
        rope_neox(head, s.n_rot, pos0 + i, s.rope_base);
      }
      seq.write(pos0 + i, cache_layer, false, k.subspan(t * kv_dim, kv_dim));
      seq.write(pos0 + i, cache_layer, true, v.subspan(t * kv_dim, kv_dim));
    }
    cached += size_t(seq.length());
  }

  // Every cached key and value of this layer, read back once per call (through the cache
  // type, so a token sees exactly what later tokens will see).
  const auto keys = sized(scratch.keys, cached * kv_dim), values = sized(scratch.values, cached * kv_dim);
  size_t begin = 0;
  for (const SeqTokens& st : seqs) {
    const SequenceState& seq = *st.seq;
    parallel_chunks(pool, size_t(seq.length()), 64, [&](size_t first, size_t last, int) {
      for (size_t p = first; p < last; ++p) {
        seq.read(int64_t(p), cache_layer, false, keys.subspan((begin + p) * kv_dim, kv_dim));
        seq.read(int64_t(p), cache_layer, true, values.subspan((begin + p) * kv_dim, kv_dim));
      }
    });
    begin += size_t(seq.length());
  }

  // One task per (token, KV head): the query heads of a GQA group read each key once.
  const auto mixed = sized(scratch.mixed, n * q_dim);
  const int group = s.n_head / s.n_head_kv;
  const AttendFn attend = attend_kernel();
  pool.parallel_for(size_t(n) * s.n_head_kv, [&](size_t task, int) {
    const int t = int(task / s.n_head_kv), g = int(task % s.n_head_kv);
    const TokenPlace& at = places[size_t(t)];
    thread_local std::vector<float> scores;
    AttendArgs args;
    args.q = q.data() + t * q_dim + size_t(g) * group * hd;
    args.group = group;
    args.head_dim = hd;
    args.keys = keys.data() + at.kv_begin * kv_dim + size_t(g) * hd;
    args.values = values.data() + at.kv_begin * kv_dim + size_t(g) * hd;
    args.stride = kv_dim;
    args.visible = at.pos + 1;  // causal: positions 0 .. own
    args.scale = 1.0f / std::sqrt(float(hd));
    args.out = mixed.data() + t * q_dim + size_t(g) * group * hd;
    args.scores = sized(scores, size_t(group) * size_t(args.visible)).data();
    attend(args);
  });
  if (s.gated) {
    for (size_t i = 0; i < mixed.size(); ++i) mixed[i] *= sigmoid(gate[i]);
  }
  matmul(w.o, mixed, n, out, pool);
}

namespace {

float silu(float x) { return x / (1.0f + std::exp(-x)); }

// h = silu(g) * u, elementwise; h may alias g.
void swiglu(std::span<const float> g, std::span<const float> u, std::span<float> h) {
  for (size_t i = 0; i < h.size(); ++i) h[i] = silu(g[i]) * u[i];
}

// Products of equal height as one parallel job: tasks of kMatmulRowsPerTask rows, product-major.
void run_row_tasks(std::span<const RowProduct> products, ThreadPool& pool) {
  if (products.empty()) return;
  const int64_t rows = products.front().n_rows();
  const size_t per = size_t((rows + kMatmulRowsPerTask - 1) / kMatmulRowsPerTask);
  pool.parallel_for(products.size() * per, [&](size_t task, int) {
    const int64_t r0 = int64_t(task % per) * kMatmulRowsPerTask;
    products[task / per].rows(r0, std::min(rows, r0 + kMatmulRowsPerTask));
  });
}

// expert_sum for one token whose down products read Q8_0 activations (a decode step): one
// parallel job of two kinds of task, where the general path takes four steps (the gate/up
// products, the SwiGLU, the hidden rows' quantization on one thread, the down products, then
// the weighted sum on one thread).
// - An A task is one half (gate or up) of 32 rows of one expert; the second half of a block to
//   finish computes the block's SwiGLU and its Q8_0 block of hidden activations (Q8_0 blocks
//   are quantized each on its own: the bytes of quantizing the whole row).
// - A B task is kDownRows output rows of one expert's down product, once that expert's hidden
//   row is whole; the last expert to finish a stretch of rows adds the stretch's weighted sum,
//   in rank order.
// The pool hands out tasks in index order, A before B and expert by expert, so a B task waits
// only for A tasks already taken, and the threads that run out of A tasks start the down rows
// of the first experts while the last gate/up rows are read: no barrier between the kinds.
// A half of 32 rows and a stretch of 64 down rows are 70 and 35 KB of Q8_0 weights read in one
// run (the 80B's shapes), finer than the 139 KB tasks of a barrier-split version, which left
// most threads idle at the end of the gate/up job with the 2-5 experts of a hybrid layer.
// The same bits as the general path: each row is the same product, the sum in the same order.
void expert_sum_one_token(const MoeLayer& w, std::span<const float> u, std::span<const int32_t> experts,
                          std::span<const float> weights, std::span<float> out, ThreadPool& pool, Scratch& scratch) {
  const int64_t n_embd = w.gate.first.cols, ff = w.gate.first.rows;
  std::vector<std::pair<int32_t, float>> ranks;  // (expert, weight) of the slots computed here, in rank order
  ranks.reserve(experts.size());
  for (size_t r = 0; r < experts.size(); ++r) {
    if (experts[r] < 0) continue;
    MOE_ASSERT(experts[r] < w.gate.n_expert);
    ranks.emplace_back(experts[r], weights[r]);
  }
  const size_t m = ranks.size();
  if (m == 0) {
    std::fill(out.begin(), out.end(), 0.0f);
    return;
  }
  scratch.input.quantize(vec_dot_type(w.gate.first.type), u, 1, n_embd);
  const ActivationView& in = scratch.input.view();
  const auto g = sized(scratch.g, m * size_t(ff)), up = sized(scratch.up, m * size_t(ff));
  const size_t hidden_row = row_bytes(GgmlType::Q8_0, uint64_t(ff)), block_bytes = row_bytes(GgmlType::Q8_0, kQK8_0);
  const auto hidden = sized(scratch.gathered, m * hidden_row);
  const auto expert_out = sized(scratch.expert_out, m * size_t(n_embd));
  struct ExpertProducts {
    RowProduct gate, up, down;
  };
  std::vector<ExpertProducts> products;  // per rank computed here
  products.reserve(m);
  for (size_t i = 0; i < m; ++i) {
    const int e = ranks[i].first;
    const ActivationView h{GgmlType::Q8_0, ff, 1, hidden.data() + i * hidden_row, hidden_row};
    products.push_back({RowProduct(w.gate.expert(e), in, g.subspan(i * size_t(ff), size_t(ff))),
                        RowProduct(w.up.expert(e), in, up.subspan(i * size_t(ff), size_t(ff))),
                        RowProduct(w.down.expert(e), h, expert_out.subspan(i * size_t(n_embd), size_t(n_embd)))});
  }
  constexpr int64_t kDownRows = 4 * kMatmulRowsPerTask;
  const size_t blocks = size_t(ff / kQK8_0), stretches = size_t((n_embd + kDownRows - 1) / kDownRows);
  const size_t a_tasks = m * blocks * 2, b_tasks = m * stretches;
  // Halves done of each block, blocks done of each expert, experts done of each stretch: one
  // zeroed allocation a call.
  const auto counters = std::make_unique<std::atomic<int>[]>(m * blocks + m + stretches);
  std::atomic<int>* const halves = counters.get();
  std::atomic<int>* const whole = halves + m * blocks;
  std::atomic<int>* const summed = whole + m;
  std::atomic<bool> failed{false};  // a task threw: the waiting ones give up (the pool rethrows)
  pool.parallel_for(a_tasks + b_tasks, [&](size_t task, int) {
    try {
      if (task < a_tasks) {
        const size_t i = task / (2 * blocks), b = task / 2 % blocks;
        const int64_t r0 = int64_t(b) * kQK8_0;
        (task % 2 == 0 ? products[i].gate : products[i].up).rows(r0, r0 + kQK8_0);
        if (halves[i * blocks + b].fetch_add(1, std::memory_order_acq_rel) == 0) return;  // the other half runs
        const auto gi = g.subspan(i * size_t(ff) + size_t(r0), kQK8_0);
        swiglu(gi, up.subspan(i * size_t(ff) + size_t(r0), kQK8_0), gi);
        quantize_row_q8_0(gi.data(), hidden.data() + i * hidden_row + b * block_bytes, kQK8_0);
        whole[i].fetch_add(1, std::memory_order_release);
        return;
      }
      const size_t i = (task - a_tasks) / stretches, s = (task - a_tasks) % stretches;
      while (whole[i].load(std::memory_order_acquire) < int(blocks)) {
        if (failed.load(std::memory_order_relaxed)) return;
        _mm_pause();
      }
      const int64_t r0 = int64_t(s) * kDownRows, r1 = std::min(n_embd, r0 + kDownRows);
      products[i].down.rows(r0, r1);
      if (summed[s].fetch_add(1, std::memory_order_acq_rel) + 1 < int(m)) return;  // not the last expert
      for (int64_t j = r0; j < r1; ++j) {
        float o = 0.0f;
        for (size_t k = 0; k < m; ++k) o += ranks[k].second * expert_out[k * size_t(n_embd) + size_t(j)];
        out[size_t(j)] = o;
      }
    } catch (...) {
      failed.store(true, std::memory_order_relaxed);
      throw;
    }
  });
}

}  // namespace

void dense_ffn(const DenseFfnLayer& w, std::span<const float> u, int n, std::span<float> out, ThreadPool& pool,
               Scratch& scratch) {
  const size_t ff = size_t(w.gate.rows);
  const auto g = sized(scratch.g, n * ff), up = sized(scratch.up, n * ff);
  matmul(w.gate, u, n, g, pool);
  matmul(w.up, u, n, up, pool);
  swiglu(g, up, g);
  matmul(w.down, g, n, out, pool);
}

Route route_token(std::span<const float> logits, int k, bool renormalize) {
  const int n_expert = int(logits.size());
  std::vector<int> order(static_cast<size_t>(n_expert));
  std::iota(order.begin(), order.end(), 0);
  // The softmax keeps the logits' order, so the top k are chosen on the logits themselves:
  // highest first, equal logits to the lower expert id. (Chosen on the rounded probabilities,
  // two logits an ulp apart could tie, and each backend's exp could break the tie its way.)
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  Route r;
  r.experts.assign(order.begin(), order.begin() + k);
  const float max_logit = logits[size_t(order[0])];
  if (renormalize) {
    // The softmax's denominator cancels: each weight is exp(logit - max) over the chosen ones'
    // sum, added in rank order.
    double selected = 0;
    for (int x : r.experts) selected += r.weights.emplace_back(std::exp(logits[size_t(x)] - max_logit));
    for (float& v : r.weights) v = float(v / selected);
  } else {
    double sum = 0;
    for (float l : logits) sum += std::exp(l - max_logit);
    for (int x : r.experts) r.weights.push_back(float(std::exp(logits[size_t(x)] - max_logit) / sum));
  }
  return r;
}

void expert_sum(const MoeLayer& w, std::span<const float> u, int n, std::span<const int32_t> experts,
                std::span<const float> weights, std::span<float> out, ThreadPool& pool, Scratch& scratch) {
  const int n_expert = w.gate.n_expert, k = n > 0 ? int(experts.size() / size_t(n)) : 0;
  const int64_t n_embd = w.gate.first.cols, ff = w.gate.first.rows;
  MOE_ASSERT(experts.size() == size_t(n) * size_t(k) && weights.size() == experts.size());
  MOE_ASSERT(u.size() == size_t(n) * size_t(n_embd) && out.size() == u.size());
  if (n == 1 && vec_dot_type(w.down.first.type) == GgmlType::Q8_0 && ff % kQK8_0 == 0) {
    return expert_sum_one_token(w, u, experts, weights, out, pool, scratch);
  }

  // Which (token, rank) slots each expert serves.
  std::vector<std::vector<std::pair<int, int>>> served(static_cast<size_t>(n_expert));
  for (int t = 0; t < n; ++t) {
    for (int r = 0; r < k; ++r) {
      const int32_t e = experts[size_t(t) * k + size_t(r)];
      if (e < 0) continue;
      MOE_ASSERT(e < n_expert);
      served[size_t(e)].emplace_back(t, r);
    }
  }

  // The work laid out expert by expert: expert e's tokens are rows [first[e], first[e + 1]).
  std::vector<size_t> first(static_cast<size_t>(n_expert) + 1, 0);
  std::vector<int> active;  // experts with at least one token
  for (int e = 0; e < n_expert; ++e) {
    first[size_t(e) + 1] = first[size_t(e)] + served[size_t(e)].size();
    if (!served[size_t(e)].empty()) active.push_back(e);
  }
  const size_t n_rows = first.back();

  // The input is converted once; each expert's tokens are gathered into its rows.
  scratch.input.quantize(vec_dot_type(w.gate.first.type), u, n, n_embd, &pool);
  const ActivationView& in = scratch.input.view();
  const auto gathered = sized(scratch.gathered, n_rows * in.row_stride);
  constexpr size_t kSkipped = ~size_t(0);
  std::vector<size_t> slot_row(size_t(n) * size_t(k), kSkipped);  // (token, rank) -> row
  for (int e : active) {
    for (size_t i = 0; i < served[size_t(e)].size(); ++i) {
      const auto [t, r] = served[size_t(e)][i];
      const size_t row = first[size_t(e)] + i;
      std::memcpy(gathered.data() + row * in.row_stride, in.data + size_t(t) * in.row_stride, in.row_stride);
      slot_row[size_t(t) * k + size_t(r)] = row;
    }
  }
  auto rows_of = [&](const ActivationView& a, const std::byte* base, int e) {
    return ActivationView{a.type, a.cols, int64_t(first[size_t(e) + 1] - first[size_t(e)]),
                          base + first[size_t(e)] * a.row_stride, a.row_stride};
  };
  // Expert e's part of a [row][width] buffer.
  auto part = [&](std::span<float> buf, int e, int64_t width) {
    return buf.subspan(first[size_t(e)] * width, (first[size_t(e) + 1] - first[size_t(e)]) * width);
  };

  // Every expert's gate and up products as one parallel job (no barrier per expert):
  // tasks of kMatmulRowsPerTask rows, expert-major, so a thread reads contiguous weights.
  // Each product is checked and given its kernels once, before the job.
  const auto g = sized(scratch.g, n_rows * ff), up = sized(scratch.up, n_rows * ff);
  std::vector<RowProduct> gate_up;  // per active expert: gate, then up
  for (int e : active) {
    gate_up.emplace_back(w.gate.expert(e), rows_of(in, gathered.data(), e), part(g, e, ff));
    gate_up.emplace_back(w.up.expert(e), rows_of(in, gathered.data(), e), part(up, e, ff));
  }
  if (!gate_up.empty()) run_row_tasks(gate_up, pool);
  parallel_chunks(pool, n_rows, 16, [&](size_t begin, size_t end, int) {
    const size_t b = begin * size_t(ff), len = (end - begin) * size_t(ff);
    swiglu(g.subspan(b, len), up.subspan(b, len), g.subspan(b, len));
  });

  // The down products likewise, from the hidden rows converted once.
  const auto expert_out = sized(scratch.expert_out, n_rows * n_embd);
  if (n_rows > 0) {
    // A decode step's few rows are converted faster than a parallel job starts.
    scratch.hidden.quantize(vec_dot_type(w.down.first.type), g, int64_t(n_rows), ff, n_rows > 64 ? &pool : nullptr);
    const ActivationView& hidden = scratch.hidden.view();
    std::vector<RowProduct> down;
    for (int e : active) {
      down.emplace_back(w.down.expert(e), rows_of(hidden, hidden.data, e), part(expert_out, e, n_embd));
    }
    run_row_tasks(down, pool);
  }

  // Weighted sum in rank order, so the result does not depend on which tokens shared an expert.
  parallel_chunks(pool, size_t(n), 8, [&](size_t begin, size_t end, int) {
    for (size_t t = begin; t < end; ++t) {
      float* o = out.data() + t * n_embd;
      std::fill(o, o + n_embd, 0.0f);
      for (int r = 0; r < k; ++r) {
        const size_t row = slot_row[t * k + size_t(r)];
        if (row == kSkipped) continue;
        const float wt = weights[t * k + size_t(r)];
        const float* s = expert_out.data() + row * n_embd;
        for (int64_t i = 0; i < n_embd; ++i) o[i] += wt * s[i];
      }
    }
  });
}

void moe_ffn(const MoeLayer& w, std::span<const float> u, int n, std::span<float> out, ThreadPool& pool,
             Scratch& scratch, std::span<const int32_t> forced) {
  const int n_expert = int(w.router.rows), k = w.n_expert_used;
  const int64_t n_embd = w.router.cols;
  const auto router_logits = sized(scratch.router_logits, size_t(n) * n_expert);
  matmul(w.router, u, n, router_logits, pool);
  std::vector<int32_t> experts(size_t(n) * size_t(k));
  std::vector<float> weights(experts.size());
  for (int t = 0; t < n; ++t) {
    const Route r = route_token(router_logits.subspan(size_t(t) * n_expert, size_t(n_expert)), k, w.renormalize);
    std::copy(r.experts.begin(), r.experts.end(), experts.begin() + ptrdiff_t(t) * k);
    std::copy(r.weights.begin(), r.weights.end(), weights.begin() + ptrdiff_t(t) * k);
  }
  if (!forced.empty()) {
    MOE_ASSERT(forced.size() == experts.size());
    std::copy(forced.begin(), forced.end(), experts.begin());
  }
  expert_sum(w, u, n, experts, weights, out, pool, scratch);

  if (w.has_shared) {  // out += sigmoid(shared_gate . u) * shared(u), per token
    const auto shared = sized(scratch.shared_out, size_t(n) * n_embd);
    dense_ffn(w.shared, u, n, shared, pool, scratch);
    for (int t = 0; t < n; ++t) {
      const float* ut = u.data() + size_t(t) * n_embd;
      double dot = 0;
      for (int64_t i = 0; i < n_embd; ++i) dot += double(w.shared_gate[size_t(i)]) * ut[i];
      const float scale = sigmoid(float(dot));
      float* o = out.data() + size_t(t) * n_embd;
      const float* sh = shared.data() + size_t(t) * n_embd;
      for (int64_t i = 0; i < n_embd; ++i) o[i] += scale * sh[i];
    }
  }
}

}  // namespace moe
