#pragma once
// What the prefill GEMM kernels share (gemm.cu: Q8_0 / Q4_0 and float weights; gemm_kquant.cu:
// the K-quants): the tile shape, the arguments, which activation rows a thread block takes
// (a dense stretch or an expert's tile), the output store and the int8 tensor-core product.
#include <cstddef>
#include <cstdint>

#include "ops/cuda/cp_async.cuh"
#include "ops/cuda/gemm.h"

namespace moe::cuda::gemm_tile {

constexpr int kRowsPerBlock = 128, kCols = kGemmTileRows, kStageBlocks = 4, kThreads = 256, kPipeline = 3;
constexpr int kXPitch = kStageBlocks * 32 + 16;  // bytes per staged activation row; the pad spreads banks

struct GemmArgs {
  const uint8_t* w;
  size_t expert_stride, row_stride;
  int rows, cols, n;  // n: activation rows (dense)
  const void* x;      // int8 values (Q8_0, Q8_K) or floats
  const float* xs;    // Q8_0 / Q8_K scales
  int x_row_div;
  const int32_t* perm;
  const ExpertTile* tiles;
  const int32_t* n_tiles;
  float* y;
  bool accumulate;
  const int* xsums = nullptr;  // Q8_K: the sums of 16 values
};

// The thread block's tile: its expert and activation rows (-1: none), in shared memory.
struct Tile {
  int expert, count;
};
template <int kTileCols>
__device__ bool load_tile(const GemmArgs& a, int* x_row, int* y_row, Tile& tile) {
  int first = blockIdx.y * kTileCols;
  tile = {0, 0};
  if (a.tiles) {
    if (int(blockIdx.y) >= *a.n_tiles) return false;
    const ExpertTile t = a.tiles[blockIdx.y];
    tile = {t.expert, t.count}, first = t.first;
  } else {
    tile.count = min(kTileCols, a.n - first);
  }
  for (int c = threadIdx.x; c < kTileCols; c += blockDim.x) {
    const int j = c < tile.count ? (a.perm ? a.perm[first + c] : first + c) : -1;
    x_row[c] = j < 0 ? -1 : j / a.x_row_div;
    y_row[c] = j;
  }
  __syncthreads();
  return true;
}

__device__ inline void store(const GemmArgs& a, const int* y_row, int count, int r, int c, float v) {
  if (r < a.rows && c < count) {
    float* dst = a.y + size_t(y_row[c]) * a.rows + r;
    *dst = a.accumulate ? *dst + v : v;
  }
}

__device__ __forceinline__ void mma_s8(int (&c)[4], const int (&a)[4], const int (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();
#endif
}

// The 8 warps of a block share its 128 x 64 tile: 4 along the weight rows, 2 along the
// activation rows, each 32 x 32 (2 x kWarpTiles mma tiles of 16 x 8).
constexpr int kWarpCols = kCols / 2, kWarpTiles = kWarpCols / 8;
using TileAccumulators = float[2][kWarpTiles][4];

// The stage's int8 activation values of the tile's rows (kStageBlocks blocks of 32 from block
// kb0 on; zeros past n_blocks or for rows not in the tile), 16 bytes a copy, rows kXPitch apart.
__device__ __forceinline__ void stage_activation_values(uint8_t* xbuf, const GemmArgs& a, const int* x_row, int kb0,
                                                        int n_blocks, int tid) {
  const auto* xq = static_cast<const int8_t*>(a.x);
  for (int i = tid; i < kCols * kStageBlocks * 2; i += kThreads) {  // 16-byte chunks, two a block
    const int c = i / (kStageBlocks * 2), part = i % (kStageBlocks * 2), kb = kb0 + part / 2;
    const bool valid = x_row[c] >= 0 && kb < n_blocks;
    const int8_t* src = valid ? xq + size_t(x_row[c]) * a.cols + size_t(kb0) * 32 + part * 16 : xq;
    cp_async(xbuf + c * kXPitch + part * 16, src, 16, valid ? 16 : 0);
  }
}

// The stages of a tile through the cp.async pipeline: issue(stage) copies a stage's operands into
// its buffer and commits them; compute(stage, buffer) works on a stage that has landed. The next
// kPipeline - 1 stages are in flight while one is computed; every step commits one group (empty
// past the end), so "all but the newest kPipeline - 2 groups landed" is always "this stage landed".
template <int kStageBytes, typename Issue, typename Compute>
__device__ __forceinline__ void run_stages(uint8_t* smem, int n_stages, Issue&& issue, Compute&& compute) {
  for (int stage = 0; stage < kPipeline - 1; ++stage) {
    if (stage < n_stages) {
      issue(stage);
    } else {
      cp_async_commit();
    }
  }
  for (int stage = 0; stage < n_stages; ++stage) {
    cp_async_wait<kPipeline - 2>();
    __syncthreads();  // the stage is visible to all, and the buffer refilled next was read by all
    if (stage + kPipeline - 1 < n_stages) {
      issue(stage + kPipeline - 1);
    } else {
      cp_async_commit();
    }
    compute(stage, static_cast<const uint8_t*>(smem + (stage % kPipeline) * kStageBytes));
  }
}

// Writes a warp's accumulators (its tile from weight row r0 and activation row c0 of the
// block's tile; lane g = lane / 4, t = lane % 4 as the mma fragments have them).
__device__ __forceinline__ void store_warp_tile(const GemmArgs& a, const int* y_row, int count, int r0, int c0, int g,
                                                int t, const TileAccumulators& acc) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < kWarpTiles; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        store(a, y_row, count, r0 + i * 16 + g + (e >= 2 ? 8 : 0), c0 + j * 8 + 2 * t + (e & 1), acc[i][j][e]);
      }
    }
  }
}

// |c| < 2^22 as a float with an integer add and a float add (both full rate) instead of the
// quarter-rate int-to-float conversion: the bits of 1.5 * 2^23 + c are that float exactly.
__device__ __forceinline__ float small_int_to_float(int c) {
  return __int_as_float(0x4B400000 + c) - 12582912.0f;
}

// The K-quants' kernels (gemm_kquant.cu), for launch_gemm().
cudaError_t launch_gemm_kquant(GgmlType type, const GemmArgs& a, unsigned row_blocks, unsigned tile_count,
                               cudaStream_t stream);

}  // namespace moe::cuda::gemm_tile
