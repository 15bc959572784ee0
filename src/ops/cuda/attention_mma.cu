// Prefill attention on the tensor cores: causal GQA attention of many query tokens, flash-
// attention style, with mma.sync m16n8k16 (f16 operands, f32 sums; sm_80 and later).
//
// A block takes 64 query rows that share a kv head (its tokens x the query heads of that kv
// head, token-major) and walks the cache in tiles of kKeys positions staged in shared memory
// (an f16 cache's next tile copied with cp.async while the block works on the current one);
// each of its 4 warps owns 16 rows: it scores them against the tile (S = Q K^T), keeps an online
// softmax per row (max and sum) and adds P V to its rows' outputs, all in registers (the scores'
// accumulator fragments are the next product's operand fragments, as in FlashAttention-2). The
// operands come from shared memory by ldmatrix, the values transposed on the way.
//
// Precision: f16 operands would round the query, the probabilities and a quantized cache's
// dequantized values to 11 bits. Each of them is instead split into an f16 high part and an f16
// remainder (x = hi + lo to ~22 bits; a Q8_0/Q4_0 value, an f16 scale times a small integer, is
// split exactly), and every product takes the terms above 2^-22 relative: S = Qhi Khi + Qlo Khi
// (+ Qhi Klo), O += Phi Vhi + Plo Vhi (+ Phi Vlo). An f16 cache's values are f16 already: two
// products each instead of three. So this kernel agrees with the CUDA-core kernels and the CPU's
// f32 arithmetic to float rounding (tests/cuda/test_cuda_ops.cpp holds all of them to a double
// reference within 1e-5).
#include <cuda_fp16.h>

#include <cfloat>
#include <cstdint>

#include "ops/cuda/attention_mma.h"
#include "ops/cuda/cp_async.cuh"
#include "ops/cuda/kv_values.cuh"
#include "ops/cuda/launch.cuh"

namespace moe::cuda {
namespace {

constexpr int kWarps = 4, kRows = 16 * kWarps;

// c += a b for one m16n8k16 tile: a 16 x 16 (row-major fragments), b 16 x 8 (column-major).
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();
#endif
}

__device__ __forceinline__ uint32_t bits(__half2 h) {
  union {
    __half2 h;
    uint32_t u;
  } v{h};
  return v.u;
}

// Two floats as f16 pairs: the nearest f16s (first in the low half, as the fragments order
// them) and what those miss.
struct HalfPair {
  uint32_t hi, lo;
};
__device__ __forceinline__ HalfPair split(float a, float b) {
  const __half2 h = __floats2half2_rn(a, b);
  const float2 back = __half22float2(h);
  return {bits(h), bits(__floats2half2_rn(a - back.x, b - back.y))};
}

// Fragments of 8 x 8 f16 matrices from shared memory, four at once: lanes 8i .. 8i + 7 give
// the rows of matrix i; `trans` hands each lane the transposed pairs (the B operand of P V from
// values kept as [position][dim] rows).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __half* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = unsigned(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#else
  __trap();
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const __half* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = unsigned(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#else
  __trap();
#endif
}

template <int kDims, KvType kType>
struct MmaShape {
  static constexpr int kHeadDim = 32 * kDims;
  static constexpr int kKeys = kDims <= 4 ? 64 : 32;  // positions a tile (head_dim 256: registers)
  static constexpr bool kSplitCache = kType != KvType::F16;
  // An f16 cache's tiles are copied as they are, asynchronously, the next while this one is
  // used; a quantized cache's are dequantized and split by the threads, one at a time.
  static constexpr int kStages = kSplitCache ? 1 : 2;
  // Rows of 16-byte chunks padded by one: the 8 rows an ldmatrix reads fall in different banks.
  static constexpr int kPitch = kHeadDim + 8;
  static constexpr int kTileHalves = kKeys * kPitch;  // keys or values, high or low parts
  static constexpr int kParts = kSplitCache ? 4 : 2;  // a stage: keys, values (then their low parts)
  static constexpr size_t kHalves = size_t(2) * kRows * kPitch + size_t(kStages) * kParts * kTileHalves;
  static constexpr size_t kBytes = kHalves * sizeof(__half);
};

// Stages positions p0 .. p0 + kKeys - 1 of kv head `kv_head`, keys and values as [position][dim]
// rows (zeros past `last`) at `stage`: keys, values, and for a quantized cache their low parts.
template <int kDims, KvType kType>
__device__ void stage_tile(__half* stage, const void* k, const void* v, int p0, int last, int kv_head, int kv_dim,
                           int tid) {
  using S = MmaShape<kDims, kType>;
  constexpr int kHeadDim = S::kHeadDim, kPitch = S::kPitch;
  __half *k_hi = stage, *v_hi = stage + S::kTileHalves;
  if constexpr (!S::kSplitCache) {
    constexpr int kChunks = kHeadDim / 8;  // 16 bytes each
    for (int i = tid; i < S::kKeys * kChunks; i += 32 * kWarps) {
      const int j = i / kChunks, d = 8 * (i % kChunks), p = p0 + j;
      const int64_t at = int64_t(min(p, last)) * kv_dim + kv_head * kHeadDim + d;
      cp_async(k_hi + j * kPitch + d, static_cast<const __half*>(k) + at, 16, p <= last ? 16 : 0);
      cp_async(v_hi + j * kPitch + d, static_cast<const __half*>(v) + at, 16, p <= last ? 16 : 0);
    }
  } else {
    // A thread takes a run of 8 values of a position (KvRun: four 2-byte loads and a scale,
    // not a byte and a scale a value) and stores each part as one 16-byte row piece.
    constexpr int kRun = 8;
    __half *k_lo = stage + 2 * S::kTileHalves, *v_lo = stage + 3 * S::kTileHalves;
    for (int i = tid; i < S::kKeys * kHeadDim / kRun; i += 32 * kWarps) {
      const int j = i / (kHeadDim / kRun), d = kRun * (i % (kHeadDim / kRun)), p = p0 + j;
      const int64_t at = int64_t(min(p, last)) * kv_dim + kv_head * kHeadDim + d;
      KvRun<kType, kRun> kr, vr;
      kr.load(k, at);
      vr.load(v, at);
      uint32_t khi[kRun / 2] = {}, klo[kRun / 2] = {}, vhi[kRun / 2] = {}, vlo[kRun / 2] = {};  // zeros past `last`
      if (p <= last) {
#pragma unroll
        for (int q = 0; q < kRun / 2; ++q) {
          const HalfPair kp = split(kr.value(2 * q), kr.value(2 * q + 1));
          const HalfPair vp = split(vr.value(2 * q), vr.value(2 * q + 1));
          khi[q] = kp.hi, klo[q] = kp.lo, vhi[q] = vp.hi, vlo[q] = vp.lo;
        }
      }
      auto store = [&](__half* at, const uint32_t (&w)[kRun / 2]) {
        *reinterpret_cast<uint4*>(at + j * kPitch + d) = make_uint4(w[0], w[1], w[2], w[3]);
      };
      store(k_hi, khi), store(k_lo, klo), store(v_hi, vhi), store(v_lo, vlo);
    }
  }
}

template <int kDims, KvType kType>
__global__ void __launch_bounds__(32 * kWarps)
    attend_prefill_mma_kernel(const float* __restrict__ q, const void* __restrict__ k, const void* __restrict__ v,
                              const int32_t* __restrict__ pos, int n, int n_head, int n_head_kv, float scale,
                              float* __restrict__ out) {
  wait_for_previous_kernels();
  allow_next_kernel();
  using S = MmaShape<kDims, kType>;
  constexpr int kHeadDim = S::kHeadDim, kKeys = S::kKeys, kPitch = S::kPitch;
  extern __shared__ __align__(16) __half smem[];
  __half* q_hi = smem;                   // [kRows][kPitch]
  __half* q_lo = q_hi + kRows * kPitch;  // [kRows][kPitch]
  __half* tiles = q_lo + kRows * kPitch;  // kStages stages of kParts [kKeys][kPitch] tiles

  const int group = n_head / n_head_kv, tokens = kRows / group;
  const int kv_head = blockIdx.y, t0 = blockIdx.x * tokens, tid = threadIdx.y * 32 + threadIdx.x;
  const int kv_dim = n_head_kv * kHeadDim;
  auto token_of = [&](int r) { return t0 + r / group; };
  auto visible = [&](int r) { return token_of(r) < n ? pos[token_of(r)] : -1; };  // last position row r sees
  int last = -1;
  for (int r = 0; r < kRows; r += group) last = max(last, visible(r));

  for (int i = tid; i < kRows * kHeadDim / 2; i += 32 * kWarps) {
    const int r = i / (kHeadDim / 2), d = 2 * (i % (kHeadDim / 2)), t = token_of(r);
    const float2 x = t < n ? *reinterpret_cast<const float2*>(
                                 q + (int64_t(t) * n_head + kv_head * group + r % group) * kHeadDim + d)
                           : make_float2(0.0f, 0.0f);
    const HalfPair h = split(x.x, x.y);
    *reinterpret_cast<uint32_t*>(q_hi + r * kPitch + d) = h.hi;
    *reinterpret_cast<uint32_t*>(q_lo + r * kPitch + d) = h.lo;
  }

  // Lane (g, c) = (lane / 4, lane % 4) holds, as the fragments have it, rows g and g + 8 of the
  // warp's 16 (A and B below) and columns 2c, 2c + 1 of each 8-column tile.
  const int lane = threadIdx.x, warp = threadIdx.y, g = lane / 4, c = lane % 4;
  const int row_a = warp * 16 + g, row_b = row_a + 8;
  const int seen_a = visible(row_a), seen_b = visible(row_b);
  int warp_last = max(seen_a, seen_b);
  for (int o = 16; o > 0; o /= 2) warp_last = max(warp_last, __shfl_xor_sync(0xFFFFFFFFu, warp_last, o));
  // The rows each lane gives ldmatrix: the query's 16 rows; a key tile pair's 16 positions; a
  // value tile pair's 16 positions (see the fragment layouts of mma.m16n8k16).
  const int q_row = warp * 16 + (lane & 15), q_col = (lane >> 4) * 8;
  const int k_row = (lane & 7) + (lane >> 4) * 8, k_col = ((lane >> 3) & 1) * 8;
  const int v_row = lane & 15, v_col = (lane >> 4) * 8;

  if constexpr (S::kStages == 2) {
    if (last >= 0) stage_tile<kDims, kType>(tiles, k, v, 0, last, kv_head, kv_dim, tid);
    cp_async_commit();
  }
  float max_a = -FLT_MAX, max_b = -FLT_MAX, sum_a = 0.0f, sum_b = 0.0f;  // sums: this lane's columns only
  float acc[kHeadDim / 8][4] = {};
  for (int it = 0, p0 = 0; p0 <= last; ++it, p0 += kKeys) {
    __half* stage = tiles + (it % S::kStages) * S::kParts * S::kTileHalves;
    __syncthreads();  // the stage written next is used up (and the query rows are in)
    if constexpr (S::kStages == 2) {
      if (p0 + kKeys <= last) {
        stage_tile<kDims, kType>(tiles + ((it + 1) % 2) * S::kParts * S::kTileHalves, k, v, p0 + kKeys, last,
                                 kv_head, kv_dim, tid);
      }
      cp_async_commit();
      cp_async_wait<1>();  // this tile's copies (the next one's may still be in flight)
    } else {
      stage_tile<kDims, kType>(stage, k, v, p0, last, kv_head, kv_dim, tid);
    }
    __syncthreads();
    if (warp_last < p0) continue;  // warp-uniform: none of the warp's rows sees this tile
    const __half *k_hi = stage, *v_hi = stage + S::kTileHalves;
    const __half *k_lo = stage + 2 * S::kTileHalves, *v_lo = stage + 3 * S::kTileHalves;

    float score[kKeys / 8][4] = {};
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      uint32_t qh[4], ql[4];
      ldmatrix_x4(qh, q_hi + q_row * kPitch + ks * 16 + q_col);
      ldmatrix_x4(ql, q_lo + q_row * kPitch + ks * 16 + q_col);
#pragma unroll
      for (int j = 0; j < kKeys / 8; j += 2) {  // key tiles j and j + 1
        const int at = (j * 8 + k_row) * kPitch + ks * 16 + k_col;
        uint32_t kb[4];
        ldmatrix_x4(kb, k_hi + at);
        const uint32_t b0[2] = {kb[0], kb[1]}, b1[2] = {kb[2], kb[3]};
        mma_f16(score[j], qh, b0);
        mma_f16(score[j], ql, b0);
        mma_f16(score[j + 1], qh, b1);
        mma_f16(score[j + 1], ql, b1);
        if constexpr (S::kSplitCache) {
          ldmatrix_x4(kb, k_lo + at);
          const uint32_t l0[2] = {kb[0], kb[1]}, l1[2] = {kb[2], kb[3]};
          mma_f16(score[j], qh, l0);
          mma_f16(score[j + 1], qh, l1);
        }
      }
    }

    // Online softmax, rows A and B: the tile's maximum over the quad of lanes sharing the row.
    float tile_a = -FLT_MAX, tile_b = -FLT_MAX;
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int p = p0 + j * 8 + 2 * c + e;
        score[j][e] = p <= seen_a ? score[j][e] * scale : -FLT_MAX;
        score[j][2 + e] = p <= seen_b ? score[j][2 + e] * scale : -FLT_MAX;
        tile_a = fmaxf(tile_a, score[j][e]);
        tile_b = fmaxf(tile_b, score[j][2 + e]);
      }
    }
    for (int o = 1; o < 4; o *= 2) {
      tile_a = fmaxf(tile_a, __shfl_xor_sync(0xFFFFFFFFu, tile_a, o));
      tile_b = fmaxf(tile_b, __shfl_xor_sync(0xFFFFFFFFu, tile_b, o));
    }
    const float new_a = fmaxf(max_a, tile_a), new_b = fmaxf(max_b, tile_b);
    const float corr_a = expf(max_a - new_a), corr_b = expf(max_b - new_b);
    max_a = new_a, max_b = new_b;
    sum_a *= corr_a, sum_b *= corr_b;
#pragma unroll
    for (int dj = 0; dj < kHeadDim / 8; ++dj) {
      acc[dj][0] *= corr_a, acc[dj][1] *= corr_a;
      acc[dj][2] *= corr_b, acc[dj][3] *= corr_b;
    }
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int p = p0 + j * 8 + 2 * c + e;
        score[j][e] = p <= seen_a ? expf(score[j][e] - max_a) : 0.0f;
        score[j][2 + e] = p <= seen_b ? expf(score[j][2 + e] - max_b) : 0.0f;
        sum_a += score[j][e];
        sum_b += score[j][2 + e];
      }
    }

    // O += P V: score tiles 2kk and 2kk + 1 are the A fragment of positions 16kk .. 16kk + 15.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const HalfPair p0a = split(score[2 * kk][0], score[2 * kk][1]), p0b = split(score[2 * kk][2], score[2 * kk][3]);
      const HalfPair p1a = split(score[2 * kk + 1][0], score[2 * kk + 1][1]);
      const HalfPair p1b = split(score[2 * kk + 1][2], score[2 * kk + 1][3]);
      const uint32_t ph[4] = {p0a.hi, p0b.hi, p1a.hi, p1b.hi}, pl[4] = {p0a.lo, p0b.lo, p1a.lo, p1b.lo};
#pragma unroll
      for (int dj = 0; dj < kHeadDim / 8; dj += 2) {  // dims tiles dj and dj + 1
        const int at = (kk * 16 + v_row) * kPitch + dj * 8 + v_col;
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, v_hi + at);
        const uint32_t b0[2] = {vb[0], vb[1]}, b1[2] = {vb[2], vb[3]};
        mma_f16(acc[dj], ph, b0);
        mma_f16(acc[dj], pl, b0);
        mma_f16(acc[dj + 1], ph, b1);
        mma_f16(acc[dj + 1], pl, b1);
        if constexpr (S::kSplitCache) {
          ldmatrix_x4_trans(vb, v_lo + at);
          const uint32_t l0[2] = {vb[0], vb[1]}, l1[2] = {vb[2], vb[3]};
          mma_f16(acc[dj], ph, l0);
          mma_f16(acc[dj + 1], ph, l1);
        }
      }
    }
  }

  for (int o = 1; o < 4; o *= 2) {
    sum_a += __shfl_xor_sync(0xFFFFFFFFu, sum_a, o);
    sum_b += __shfl_xor_sync(0xFFFFFFFFu, sum_b, o);
  }
  auto store = [&](int r, float sum, int half) {
    const int t = token_of(r);
    if (t >= n) return;
    float* row = out + (int64_t(t) * n_head + kv_head * group + r % group) * kHeadDim;
#pragma unroll
    for (int dj = 0; dj < kHeadDim / 8; ++dj) {
      *reinterpret_cast<float2*>(row + dj * 8 + 2 * c) = make_float2(acc[dj][2 * half] / sum, acc[dj][2 * half + 1] / sum);
    }
  };
  store(row_a, sum_a, 0);
  store(row_b, sum_b, 1);
}

template <int kDims, KvType kType>
cudaError_t launch_prefill_mma(const float* q, const void* k, const void* v, const int32_t* pos, int n, int n_head,
                               int n_head_kv, float scale, float* out, size_t shared_limit, cudaStream_t stream) {
  const size_t bytes = MmaShape<kDims, kType>::kBytes;
  if (bytes > shared_limit) return cudaErrorNotSupported;  // a consumer GPU (99 KiB a block): the CUDA-core kernel
  const auto kernel = attend_prefill_mma_kernel<kDims, kType>;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess) return e;
  const int tokens = kRows / (n_head / n_head_kv);
  const dim3 grid(unsigned((n + tokens - 1) / tokens), unsigned(n_head_kv)), block(32, kWarps);
  return launch(kernel, grid, block, bytes, stream, q, k, v, pos, n, n_head, n_head_kv, scale, out);
}

template <KvType kType>
cudaError_t prefill_mma_for_head_dim(const float* q, const void* k, const void* v, const int32_t* pos, int n,
                                     int n_head, int n_head_kv, int head_dim, float scale, float* out,
                                     size_t shared_limit, cudaStream_t stream) {
  switch (head_dim) {
    case 64: return launch_prefill_mma<2, kType>(q, k, v, pos, n, n_head, n_head_kv, scale, out, shared_limit, stream);
    case 128: return launch_prefill_mma<4, kType>(q, k, v, pos, n, n_head, n_head_kv, scale, out, shared_limit, stream);
    case 256: return launch_prefill_mma<8, kType>(q, k, v, pos, n, n_head, n_head_kv, scale, out, shared_limit, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace

cudaError_t attend_prefill_mma(const float* q, KvType type, const void* k, const void* v, const int32_t* pos, int n,
                               int n_head, int n_head_kv, int head_dim, float scale, float* out, cudaStream_t stream) {
  if (n_head_kv <= 0 || n_head % n_head_kv != 0 || kRows % (n_head / n_head_kv) != 0) return cudaErrorNotSupported;
  if (device_compute_major() < 8) return cudaErrorNotSupported;
  int device = 0, shared_limit = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (e != cudaSuccess) return e;
  return with_kv_type(type, [&](auto t) {
    return prefill_mma_for_head_dim<decltype(t)::value>(q, k, v, pos, n, n_head, n_head_kv, head_dim, scale, out,
                                                        size_t(shared_limit), stream);
  });
}

}  // namespace moe::cuda
