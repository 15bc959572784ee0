#include "ops/cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <immintrin.h>

#include "core/error.h"
#include "ops/cpu/quantize.h"
#include "ops/cpu/vec_dot.h"

namespace moe {
namespace {

std::atomic<size_t> g_prefetch_bytes{kDefaultWeightPrefetchBytes};

// Requests bytes [from, from + count) of the `size` bytes at base (clipped), a line at a time.
inline void prefetch_range(const std::byte* base, size_t size, size_t from, size_t count) {
  const size_t stop = std::min(size, from + count);
  for (size_t at = from; at < stop; at += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(base + at), _MM_HINT_T0);
  }
}

}  // namespace

void set_weight_prefetch_bytes(size_t bytes) { g_prefetch_bytes.store(bytes, std::memory_order_relaxed); }
size_t weight_prefetch_bytes() { return g_prefetch_bytes.load(std::memory_order_relaxed); }

WeightView WeightView::packed(GgmlType type, int64_t rows, int64_t cols, const std::byte* data) {
  return {type, rows, cols, data, static_cast<size_t>(row_bytes(type, static_cast<uint64_t>(cols)))};
}

WeightView WeightView::interleaved(GgmlType type, WeightLayout layout, int64_t rows, int64_t cols,
                                   const std::byte* data) {
  return {type, rows, cols, data, 0, layout};
}

size_t WeightView::bytes() const {
  if (layout == WeightLayout::Rows) return row_stride * static_cast<size_t>(rows);
  return interleaved_group_bytes(layout, cols) * static_cast<size_t>(rows / kInterleaveRows);
}

void QuantizedActivations::quantize(GgmlType type, std::span<const float> x, int64_t n_tokens, int64_t cols,
                                    ThreadPool* pool) {
  if (type != GgmlType::F32 && type != GgmlType::Q8_0 && type != GgmlType::Q8_K) {
    fail("activations cannot be converted to {}: not a vec_dot type", type_name(type));
  }
  if (n_tokens < 0 || cols <= 0 || x.size() != static_cast<size_t>(n_tokens * cols)) {
    fail("activations: {} values for {} tokens of {} columns", x.size(), n_tokens, cols);
  }
  if (cols % block_size(type) != 0) {
    fail("activations: {} columns is not a multiple of the {} block size {}", cols, type_name(type), block_size(type));
  }
  const size_t rb = row_bytes(type, static_cast<uint64_t>(cols));
  storage_.resize(rb * static_cast<size_t>(n_tokens));
  auto convert = [&](size_t t) {
    quantize_row(type, x.subspan(t * static_cast<size_t>(cols), static_cast<size_t>(cols)),
                 std::span(storage_.data() + t * rb, rb));
  };
  // Each token is converted on its own, so the bytes do not depend on the split.
  if (pool && n_tokens > 1) {
    pool->parallel_for(static_cast<size_t>(n_tokens), [&](size_t t, int) { convert(t); });
  } else {
    for (int64_t t = 0; t < n_tokens; ++t) convert(static_cast<size_t>(t));
  }
  view_ = {type, cols, n_tokens, storage_.data(), rb};
}

namespace {

void check_product(const WeightView& w, const ActivationView& x, std::span<float> y) {
  const GgmlType act_type = vec_dot_type(w.type);  // throws for formats without kernels
  if (x.type != act_type) {
    fail("matmul: {} weights need {} activations, got {}", type_name(w.type), type_name(act_type), type_name(x.type));
  }
  if (w.rows < 0 || w.cols <= 0 || w.cols % block_size(w.type) != 0) {
    fail("matmul: {} x {} {} weights: columns must be a positive multiple of {}", w.rows, w.cols, type_name(w.type),
         block_size(w.type));
  }
  if (w.layout != WeightLayout::Rows) {
    if (interleaved_type(w.layout) != w.type || w.rows % kInterleaveRows != 0) {
      fail("matmul: {} x {} {} weights cannot be in interleaved layout {}", w.rows, w.cols, type_name(w.type),
           static_cast<int>(w.layout));
    }
  } else if (w.row_stride < row_bytes(w.type, static_cast<uint64_t>(w.cols))) {
    fail("matmul: row stride {} is shorter than a {} row of {} values", w.row_stride, type_name(w.type), w.cols);
  }
  if (x.cols != w.cols) fail("matmul: activations have {} columns, weights {}", x.cols, w.cols);
  if (y.size() != static_cast<size_t>(x.n_tokens * w.rows)) {
    fail("matmul: output has {} values, expected {} tokens x {} rows", y.size(), x.n_tokens, w.rows);
  }
}

// Rows [r0, r1) of the product, on the calling thread, with kernels already chosen.
void product_rows(const WeightView& w, const ActivationView& x, int64_t r0, int64_t r1, std::span<float> y,
                  VecDotFn dot, GemmTileFn tile) {
  const int64_t rows = w.rows;
  // Token groups outside, rows inside: the weight rows stay in L1/L2 while every group of
  // tokens passes over them, and each group is decoded once per weight block.
  for (int64_t t0 = 0; t0 < x.n_tokens; t0 += kMaxDotTokens) {
    const int n_tok = static_cast<int>(std::min<int64_t>(kMaxDotTokens, x.n_tokens - t0));
    const std::byte* xt = x.data + static_cast<size_t>(t0) * x.row_stride;
    int64_t r = r0;
    const size_t ahead = n_tok == x.n_tokens ? weight_prefetch_bytes() : 0;  // one pass over the rows
    const size_t size = static_cast<size_t>(rows) * w.row_stride;
    if (tile) {  // same numbers as `dot`, fewer instructions
      for (; r + kGemmTileRows <= r1; r += kGemmTileRows) {
        float out[kGemmTileRows * kGemmTileTokens];
        if (ahead) {
          prefetch_range(w.data, size, static_cast<size_t>(r) * w.row_stride + ahead, kGemmTileRows * w.row_stride);
        }
        tile(w.cols, w.data + static_cast<size_t>(r) * w.row_stride, w.row_stride, xt, x.row_stride, n_tok, out);
        for (int i = 0; i < kGemmTileRows; ++i) {
          for (int t = 0; t < n_tok; ++t) y[static_cast<size_t>((t0 + t) * rows + r + i)] = out[i * kGemmTileTokens + t];
        }
      }
    }
    for (; r < r1; ++r) {
      float out[kMaxDotTokens];
      if (ahead) prefetch_range(w.data, size, static_cast<size_t>(r) * w.row_stride + ahead, w.row_stride);
      dot(w.cols, w.data + static_cast<size_t>(r) * w.row_stride, xt, x.row_stride, n_tok, out);
      for (int t = 0; t < n_tok; ++t) y[static_cast<size_t>((t0 + t) * rows + r)] = out[t];
    }
  }
}

// Groups of 16 interleaved rows [r0, r1), token groups outside as above.
void group_rows(const WeightView& w, const ActivationView& x, int64_t r0, int64_t r1, std::span<float> y,
                GroupDotFn dot) {
  const size_t group_bytes = interleaved_group_bytes(w.layout, w.cols);
  for (int64_t t0 = 0; t0 < x.n_tokens; t0 += kMaxDotTokens) {
    const int n_tok = static_cast<int>(std::min<int64_t>(kMaxDotTokens, x.n_tokens - t0));
    const std::byte* xt = x.data + static_cast<size_t>(t0) * x.row_stride;
    for (int64_t r = r0; r < r1; r += kInterleaveRows) {
      float out[kInterleaveRows * kMaxDotTokens];
      dot(w.cols, w.data + static_cast<size_t>(r / kInterleaveRows) * group_bytes, xt, x.row_stride, n_tok, out);
      for (int i = 0; i < kInterleaveRows; ++i) {
        for (int t = 0; t < n_tok; ++t) y[static_cast<size_t>((t0 + t) * w.rows + r + i)] = out[i * kMaxDotTokens + t];
      }
    }
  }
}

}  // namespace

RowProduct::RowProduct(const WeightView& w, const ActivationView& x, std::span<float> y)
    : w_(w), x_(x), y_(y), dot_(nullptr), tile_(nullptr), group_dot_(nullptr) {
  check_product(w, x, y);
  if (w.layout == WeightLayout::Rows) {
    dot_ = vec_dot_kernel(w.type);
    tile_ = gemm_tile_kernel(w.type);
  } else {
    group_dot_ = group_dot_kernel(w.layout);
  }
}

void RowProduct::rows(int64_t r0, int64_t r1) const {
  MOE_ASSERT(r0 >= 0 && r0 <= r1 && r1 <= w_.rows);
  if (group_dot_) {
    MOE_ASSERT(r0 % kInterleaveRows == 0 && r1 % kInterleaveRows == 0);
    group_rows(w_, x_, r0, r1, y_, group_dot_);
  } else {
    product_rows(w_, x_, r0, r1, y_, dot_, tile_);
  }
}

void matmul(const WeightView& w, const ActivationView& x, std::span<float> y, ThreadPool& pool) {
  const RowProduct product(w, x, y);
  const auto n_tasks = static_cast<size_t>((w.rows + kMatmulRowsPerTask - 1) / kMatmulRowsPerTask);
  pool.parallel_for(n_tasks, [&](size_t task, int) {
    const int64_t r0 = static_cast<int64_t>(task) * kMatmulRowsPerTask;
    product.rows(r0, std::min(w.rows, r0 + kMatmulRowsPerTask));
  });
}

void matmul(const WeightView& w, std::span<const float> x, int64_t n_tokens, std::span<float> y, ThreadPool& pool) {
  const GgmlType act_type = vec_dot_type(w.type);
  if (n_tokens < 0 || x.size() != static_cast<size_t>(n_tokens * w.cols)) {
    fail("matmul: {} activation values for {} tokens of {} columns", x.size(), n_tokens, w.cols);
  }
  if (act_type == GgmlType::F32) {  // float weights read the activations in place
    const ActivationView view{GgmlType::F32, w.cols, n_tokens, reinterpret_cast<const std::byte*>(x.data()),
                              static_cast<size_t>(w.cols) * sizeof(float)};
    matmul(w, view, y, pool);
    return;
  }
  // One scratch per calling thread: a decode step calls this hundreds of times, so the
  // buffer is reused instead of allocated each time.
  thread_local QuantizedActivations scratch;
  scratch.quantize(act_type, x, n_tokens, w.cols, &pool);
  matmul(w, scratch.view(), y, pool);
}

}  // namespace moe
