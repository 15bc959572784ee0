// The prefill GEMM: int8 tensor-core tiles (mma.sync m16n8k32) over Q8_0 / Q4_0 weight blocks.
// A thread block computes 128 weight rows x 64 activation rows; its 8 warps 32 x 32 each
// (2 x 4 mma tiles). The operands of 4 blocks of 32 values (a stage) are copied into shared
// memory as they are in global memory, weight blocks with their f16 scales, by cp.async, the
// next kPipeline - 1 stages in flight while the tensor cores work on this one. The mma
// fragments are read from the raw blocks (Q4_0 nibbles widened to int8 on the way); each
// block's int32 products are scaled by both scales in f32 and added to f32 accumulators.
// Float weights (the routers, F16/BF16 models) take a plain f32 tile kernel instead; the
// K-quants their own kernel on the same tile (gemm_kquant.cu).
#include <cuda_bf16.h>

#include "ops/cuda/block_fields.cuh"
#include "ops/cuda/gemm.h"
#include "ops/cuda/gemm_tile.cuh"
#include "ops/cuda/launch.cuh"

namespace moe::cuda {
namespace {

using namespace gemm_tile;

// The float kernel's tile: 8 weight rows x 32 activation rows (half a 64-row tile, so that a
// router of 128 rows over 512 tokens still makes 256 thread blocks), 128 columns a step.
constexpr int kFloatRows = 8, kFloatCols = 32, kFloatK = 128;  // long steps: fewer waits on loads
static_assert(kFloatRows * kFloatCols == kThreads && kCols % kFloatCols == 0);
constexpr int kMaxExperts = 1024;

// A weight block's mma operand words for values 4t..4t+3 (lo) and 16+4t..16+4t+3 (hi).
template <bool kQ4>
__device__ __forceinline__ void block_words(const uint8_t* blk, int t, int& lo, int& hi) {
  if constexpr (kQ4) {  // values 0..15 in the low nibbles of qs[0..15], 16..31 in the high nibbles, minus 8
    const unsigned v = unsigned(word_at_a2(blk + 2 + 4 * t));
    lo = int(__vsub4(v & 0x0F0F0F0Fu, 0x08080808u));
    hi = int(__vsub4((v >> 4) & 0x0F0F0F0Fu, 0x08080808u));
  } else {
    lo = word_at_a2(blk + 2 + 4 * t);
    hi = word_at_a2(blk + 2 + 16 + 4 * t);
  }
}

// How the weight rows of a stage (kStageBlocks blocks of 32 values) are staged in shared
// memory and read back as mma operands. GGUF blocks are copied as they are, in 4-byte words,
// and read 2 bytes at a time; split Q8_0 rows (layout.h) are copied in 16-byte chunks (values)
// and 8 bytes (scales), and read a word at a time.
template <bool kQ4>
struct GgufRows {
  static constexpr int kBlockBytes = kQ4 ? 18 : 34;
  static constexpr int kRowBytes = kStageBlocks * kBlockBytes;  // a multiple of 4
  __device__ static void issue(uint8_t* buf, const GemmArgs& a, const uint8_t* w, int row0, int kb0, int tid) {
    constexpr int kWords = kRowBytes / 4;
    const int row_bytes = a.cols / 32 * kBlockBytes;
    for (int i = tid; i < kRowsPerBlock * kWords; i += kThreads) {
      const int r = i / kWords, off = kb0 * kBlockBytes + 4 * (i % kWords);
      const bool valid = row0 + r < a.rows && off < row_bytes;
      cp_async(buf + r * kRowBytes + 4 * (i % kWords), valid ? w + size_t(row0 + r) * a.row_stride + off : w, 4,
               valid ? 4 : 0);
    }
  }
  __device__ static void words(const uint8_t* row, int b, int t, int& lo, int& hi) {
    block_words<kQ4>(row + b * kBlockBytes, t, lo, hi);
  }
  __device__ static float scale(const uint8_t* row, int b) { return f16_at(row + b * kBlockBytes); }
};

struct SplitQ8_0Rows {
  static constexpr int kRowBytes = kStageBlocks * 32 + 16;  // values, then 8 bytes of scales (16-byte rows)
  __device__ static void issue(uint8_t* buf, const GemmArgs& a, const uint8_t* w, int row0, int kb0, int tid) {
    constexpr int kChunks = kStageBlocks * 2 + 1;  // 16-byte chunks of values, then the scales
    const int n_blocks = a.cols / 32;
    for (int i = tid; i < kRowsPerBlock * kChunks; i += kThreads) {
      const int r = i / kChunks, part = i % kChunks;
      const bool row_ok = row0 + r < a.rows;
      const uint8_t* row = w + size_t(row0 + r) * a.row_stride;
      if (part < kStageBlocks * 2) {
        const bool valid = row_ok && kb0 + part / 2 < n_blocks;
        cp_async(buf + r * kRowBytes + 16 * part, valid ? row + kb0 * 32 + 16 * part : w, 16, valid ? 16 : 0);
      } else {  // the stage's scales; past the row's last block, zeros
        const int bytes = row_ok ? 2 * min(kStageBlocks, n_blocks - kb0) : 0;
        cp_async(buf + r * kRowBytes + kStageBlocks * 32, bytes ? row + a.cols + 2 * kb0 : w, 8, bytes);
      }
    }
  }
  __device__ static void words(const uint8_t* row, int b, int t, int& lo, int& hi) {
    const auto* v = reinterpret_cast<const int*>(row + b * 32) + t;
    lo = v[0], hi = v[4];
  }
  __device__ static float scale(const uint8_t* row, int b) { return f16_at(row + kStageBlocks * 32 + 2 * b); }
};

template <typename Rows>
constexpr int kQuantStageBytes = kRowsPerBlock * Rows::kRowBytes + kCols * kXPitch + kCols * kStageBlocks * 4;

// kCols activation rows a block, for dense products and expert tiles alike. (Expert tiles of
// 32 rows measured slower on a 512-token prefill of 30B-A3B: an expert's weights are then read
// once per 32 of its rows, though half of a 64-row tile is padding there.)
template <typename Rows>
__global__ void __launch_bounds__(kThreads) gemm_quant_kernel(GemmArgs a) {
  wait_for_previous_kernels();
  allow_next_kernel();
  constexpr int kStageBytes = kQuantStageBytes<Rows>, kWBytes = kRowsPerBlock * Rows::kRowBytes;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ int x_row[kCols], y_row[kCols];
  Tile tile;
  if (!load_tile<kCols>(a, x_row, y_row, tile)) return;
  const int tid = threadIdx.x, row0 = blockIdx.x * kRowsPerBlock;
  const uint8_t* w = a.w + size_t(tile.expert) * a.expert_stride;
  const int n_blocks = a.cols / 32, n_stages = (n_blocks + kStageBlocks - 1) / kStageBlocks;

  auto issue = [&](int stage) {
    uint8_t* buf = smem + (stage % kPipeline) * kStageBytes;
    const int kb0 = stage * kStageBlocks;
    Rows::issue(buf, a, w, row0, kb0, tid);
    uint8_t* xbuf = buf + kWBytes;
    stage_activation_values(xbuf, a, x_row, kb0, n_blocks, tid);
    float* xd = reinterpret_cast<float*>(xbuf + kCols * kXPitch);
    for (int i = tid; i < kCols * kStageBlocks; i += kThreads) {
      const int c = i / kStageBlocks, kb = kb0 + i % kStageBlocks;
      const bool valid = x_row[c] >= 0 && kb < n_blocks;
      cp_async(xd + i, valid ? a.xs + size_t(x_row[c]) * n_blocks + kb : a.xs, 4, valid ? 4 : 0);
    }
    cp_async_commit();
  };

  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wm = (warp % 4) * 32, wn = (warp / 4) * kWarpCols;  // the warp's first row and column
  TileAccumulators acc = {};
  run_stages<kStageBytes>(smem, n_stages, issue, [&](int, const uint8_t* buf) {
    const uint8_t* xbuf = buf + kWBytes;
    const float* xd = reinterpret_cast<const float*>(xbuf + kCols * kXPitch);
#pragma unroll
    for (int b = 0; b < kStageBlocks; ++b) {
      int af[2][4], bf[kWarpTiles][2];
      float sw[2][2], sx[kWarpTiles][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const uint8_t* top = buf + (wm + i * 16 + g) * Rows::kRowBytes;
        const uint8_t* bottom = top + 8 * Rows::kRowBytes;
        Rows::words(top, b, t, af[i][0], af[i][2]);
        Rows::words(bottom, b, t, af[i][1], af[i][3]);
        sw[i][0] = Rows::scale(top, b), sw[i][1] = Rows::scale(bottom, b);
      }
#pragma unroll
      for (int j = 0; j < kWarpTiles; ++j) {
        const auto* xw = reinterpret_cast<const int*>(xbuf + (wn + j * 8 + g) * kXPitch + b * 32) + t;
        bf[j][0] = xw[0], bf[j][1] = xw[4];
        const int c = wn + j * 8 + 2 * t;
        sx[j][0] = xd[c * kStageBlocks + b], sx[j][1] = xd[(c + 1) * kStageBlocks + b];
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < kWarpTiles; ++j) {
          int c[4] = {0, 0, 0, 0};
          mma_s8(c, af[i], bf[j]);
          acc[i][j][0] += small_int_to_float(c[0]) * (sw[i][0] * sx[j][0]);
          acc[i][j][1] += small_int_to_float(c[1]) * (sw[i][0] * sx[j][1]);
          acc[i][j][2] += small_int_to_float(c[2]) * (sw[i][1] * sx[j][0]);
          acc[i][j][3] += small_int_to_float(c[3]) * (sw[i][1] * sx[j][1]);
        }
      }
    }
  });
  store_warp_tile(a, y_row, tile.count, row0 + wm, wn, g, t, acc);
}

// Float weights: f32 tiles, one output a thread.
template <typename T>
__device__ float to_float(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return float(v);  // __half and __nv_bfloat16 convert exactly
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) gemm_float_kernel(GemmArgs a) {
  wait_for_previous_kernels();
  allow_next_kernel();
  __shared__ float ws[kFloatK][kFloatRows + 1], xs[kFloatK][kFloatCols + 1];
  __shared__ int x_row[kCols], y_row[kCols];
  Tile tile;
  if (!load_tile<kCols>(a, x_row, y_row, tile)) return;
  // This block: rows row0.. of the weights, columns c0.. of the tile (blockIdx.z: which part).
  const int tid = threadIdx.x, row0 = blockIdx.x * kFloatRows, c0 = blockIdx.z * kFloatCols;
  const int tx = tid % kFloatCols, ty = tid / kFloatCols;
  const auto* x = static_cast<const float*>(a.x);
  const uint8_t* w = a.w + size_t(tile.expert) * a.expert_stride;
  float acc = 0.0f;
  for (int k0 = 0; k0 < a.cols; k0 += kFloatK) {
    for (int i = tid; i < kFloatRows * kFloatK; i += kThreads) {
      const int r = i / kFloatK, k = i % kFloatK;
      const bool valid = row0 + r < a.rows && k0 + k < a.cols;
      ws[k][r] = valid ? to_float(reinterpret_cast<const T*>(w + size_t(row0 + r) * a.row_stride)[k0 + k]) : 0.0f;
    }
    for (int i = tid; i < kFloatCols * kFloatK; i += kThreads) {
      const int c = i / kFloatK, k = i % kFloatK, xr = x_row[c0 + c];
      xs[k][c] = xr >= 0 && k0 + k < a.cols ? x[size_t(xr) * a.cols + k0 + k] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kFloatK; ++k) acc += ws[k][ty] * xs[k][tx];
    __syncthreads();
  }
  store(a, y_row, tile.count, row0 + ty, c0 + tx, acc);
}

// One block: count the rows of each expert, cut each expert's rows into tiles (thread 0, in
// expert order), then place every row id in its expert's range.
__global__ void group_by_expert_kernel(const int32_t* __restrict__ experts, int n_rows, int n_expert, int32_t* perm,
                                       ExpertTile* tiles, int32_t* n_tiles) {
  wait_for_previous_kernels();
  allow_next_kernel();
  __shared__ int count[kMaxExperts], start[kMaxExperts];
  for (int e = threadIdx.x; e < n_expert; e += blockDim.x) count[e] = 0;
  __syncthreads();
  // Ids < 0 are slots another engine computes (the hybrid's CPU): in no tile.
  for (int j = threadIdx.x; j < n_rows; j += blockDim.x) {
    if (experts[j] >= 0) atomicAdd(&count[experts[j]], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int s = 0, nt = 0;
    for (int e = 0; e < n_expert; ++e) {
      start[e] = s;
      for (int c0 = 0; c0 < count[e]; c0 += kCols) tiles[nt++] = {e, s + c0, min(kCols, count[e] - c0)};
      s += count[e];
      count[e] = 0;  // now the expert's cursor
    }
    *n_tiles = nt;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < n_rows; j += blockDim.x) {
    const int e = experts[j];
    if (e >= 0) perm[start[e] + atomicAdd(&count[e], 1)] = j;
  }
}

}  // namespace

cudaError_t launch_group_by_expert(const int32_t* experts, int n_rows, int n_expert, int32_t* perm, ExpertTile* tiles,
                                   int32_t* n_tiles, cudaStream_t stream) {
  if (n_expert > kMaxExperts) return cudaErrorInvalidValue;
  launch(group_by_expert_kernel, 1, 1024, 0, stream, experts, n_rows, n_expert, perm, tiles, n_tiles);
  return cudaGetLastError();
}

cudaError_t launch_gemm(GgmlType type, GpuLayout layout, const void* w, size_t expert_stride, size_t row_stride,
                        int64_t rows,
                        const DeviceActivations& x, int x_row_div, const int32_t* perm, const ExpertTile* tiles,
                        const int32_t* n_tiles, int max_tiles, float* y, bool accumulate, cudaStream_t stream) {
  const bool quant = x.type != GgmlType::F32;
  GemmArgs a{static_cast<const uint8_t*>(w), expert_stride, row_stride, int(rows), int(x.cols), x.n_tok,
             quant ? static_cast<const void*>(x.qs) : static_cast<const void*>(x.f32), x.scales, x_row_div, perm,
             tiles, n_tiles, y, accumulate, x.sums};
  const unsigned tile_count = tiles ? unsigned(max_tiles) : unsigned((x.n_tok + kCols - 1) / kCols);
  if (rows == 0 || tile_count == 0) return cudaSuccess;
  const unsigned row_blocks = unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const dim3 float_grid(unsigned((rows + kFloatRows - 1) / kFloatRows), tile_count, kCols / kFloatCols);
  auto quant_launch = [&](auto kernel, int bytes) {
    // The pipeline's stages in dynamic shared memory: past the 48 KiB default, so opt in.
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kPipeline * bytes);
    if (e != cudaSuccess) return e;
    launch(kernel, dim3(row_blocks, tile_count), kThreads, kPipeline * bytes, stream, a);
    return cudaGetLastError();
  };
  switch (type) {
    case GgmlType::Q8_0:
      return layout == GpuLayout::Q8_0Split
                 ? quant_launch(gemm_quant_kernel<SplitQ8_0Rows>, kQuantStageBytes<SplitQ8_0Rows>)
                 : quant_launch(gemm_quant_kernel<GgufRows<false>>, kQuantStageBytes<GgufRows<false>>);
    case GgmlType::Q4_0: return quant_launch(gemm_quant_kernel<GgufRows<true>>, kQuantStageBytes<GgufRows<true>>);
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return launch_gemm_kquant(type, a, row_blocks, tile_count, stream);
    case GgmlType::F32: launch(gemm_float_kernel<float>, float_grid, kThreads, 0, stream, a); break;
    case GgmlType::F16: launch(gemm_float_kernel<__half>, float_grid, kThreads, 0, stream, a); break;
    case GgmlType::BF16: launch(gemm_float_kernel<__nv_bfloat16>, float_grid, kThreads, 0, stream, a); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace moe::cuda
