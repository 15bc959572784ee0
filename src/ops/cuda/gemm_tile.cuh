#pragma once
// What the prefill GEMM kernels share (gemm.cu: Q8_0 / Q4_0 and float weights; gemm_kquant.cu:
// the K-quants): the tile shape, the arguments, which activation rows a thread block takes
// (a dense stretch or an expert's tile), the output store, the asynchronous copies into shared
// memory and the int8 tensor-core product.
#include <cstddef>
#include <cstdint>

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

// Copies `size` bytes (4, 8 or 16; both addresses aligned to it) from global to shared memory
// asynchronously; only the first src_bytes are read, the rest is zero-filled.
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, int size, int src_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = unsigned(__cvta_generic_to_shared(smem));
  if (size == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes));
  } else if (size == 8) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes));
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes));
  }
#else
  __trap();  // device_has_gemm() keeps older devices on the matvec kernels
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;");
#endif
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
#endif
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

// |c| < 2^22 as a float with an integer add and a float add (both full rate) instead of the
// quarter-rate int-to-float conversion: the bits of 1.5 * 2^23 + c are that float exactly.
__device__ __forceinline__ float small_int_to_float(int c) {
  return __int_as_float(0x4B400000 + c) - 12582912.0f;
}

// The K-quants' kernels (gemm_kquant.cu), for launch_gemm().
cudaError_t launch_gemm_kquant(GgmlType type, const GemmArgs& a, unsigned row_blocks, unsigned tile_count,
                               cudaStream_t stream);

}  // namespace moe::cuda::gemm_tile
