// The prefill GEMM for the K-quants (Q4_K, Q5_K, Q6_K: super-blocks of 256 values) against Q8_K
// activations, on the tensor cores like gemm.cu's Q8_0 kernel and with its tile (128 weight
// rows x 64 activation rows, 8 warps of 32 x 32). A stage is half a super-block, 4 sub-blocks
// of 32 values: the bytes of the weights that the half uses are copied into shared memory as
// they are (cp.async, kPipeline - 1 stages in flight), and the mma operands are widened from
// the packed levels as they are read. Each sub-block's int32 products are multiplied by the
// sub-block's integer scale and summed in int32 over the stage, as the CPU's vec_dot sums a
// super-block in integers; then scaled in f32 by the super-block's d and the activation's
// scale. Q4_K/Q5_K's minimums (w = d sc q - dmin m) take the activations' 16-value sums.
#include <cstdint>

#include "ops/cuda/block_fields.cuh"
#include "ops/cuda/gemm.h"
#include "ops/cuda/gemm_tile.cuh"
#include "ops/cuda/launch.cuh"

namespace moe::cuda {
namespace {

using namespace gemm_tile;

static_assert(kStageBlocks == 4, "a stage is half a K-quant super-block");
constexpr int kSuperValues = 256, kStagesPerSuper = kSuperValues / (32 * kStageBlocks);

// The address of super-block `sb` of weight row `row`.
__device__ __forceinline__ const uint8_t* super_block(const GemmArgs& a, const uint8_t* w, int row, int sb, int bytes) {
  return w + size_t(row) * a.row_stride + size_t(sb) * bytes;
}

// Q4_K (144 bytes: d, dmin, scales[12], qs[128]) and Q5_K (176: d, dmin, scales[12], qh[32],
// qs[128]). Value o of a super-block: nibble (o % 64) / 32 of qs[32 (o / 64) + o % 32]; Q5_K's
// fifth bit is bit o / 32 of qh[o % 32]. A half's sub-blocks use qs[64 h, 64 h + 64) and all of
// qh. Staged row: d, dmin, scales (16 bytes), [qh (32)], the half's qs (64); 16-byte copies
// (the blocks are 16-byte aligned).
template <bool kQ5>
struct Q45Rows {
  static constexpr bool kMins = true;
  static constexpr int kBlockBytes = kQ5 ? 176 : 144, kQs = kQ5 ? 48 : 16, kRowBytes = kQs + 64;
  __device__ static void issue(uint8_t* buf, const GemmArgs& a, const uint8_t* w, int row0, int stage, int tid) {
    constexpr int kChunks = kRowBytes / 16;
    const int sb = stage / kStagesPerSuper, h = stage % kStagesPerSuper;
    for (int i = tid; i < kRowsPerBlock * kChunks; i += kThreads) {
      const int r = i / kChunks, at = 16 * (i % kChunks);
      const bool valid = row0 + r < a.rows;
      const int from = at < kQs ? at : at + 64 * h;  // the header (and qh), then the half's qs
      cp_async(buf + r * kRowBytes + at, valid ? super_block(a, w, row0 + r, sb, kBlockBytes) + from : w, 16,
               valid ? 16 : 0);
    }
  }
  // Levels (0..15, Q5_K 0..31) of values 4t.. and 16 + 4t.. of sub-block b of half h.
  __device__ static void words(const uint8_t* row, int h, int b, int t, int& lo, int& hi) {
    const int shift = 4 * (b % 2);
    const auto* q = reinterpret_cast<const unsigned*>(row + kQs + 32 * (b / 2)) + t;
    unsigned l = (q[0] >> shift) & 0x0F0F0F0Fu, u = (q[4] >> shift) & 0x0F0F0F0Fu;
    if constexpr (kQ5) {
      const auto* qh = reinterpret_cast<const unsigned*>(row + 16) + t;  // after the header
      const int s = 4 * h + b;
      l |= ((qh[0] >> s) & 0x01010101u) << 4;
      u |= ((qh[4] >> s) & 0x01010101u) << 4;
    }
    lo = int(l), hi = int(u);
  }
  // The sub-block's 6-bit scale and min, and the super-block's d and dmin.
  __device__ static void scales(const uint8_t* row, int h, int b, int& sc, int& m) { k_scale(row + 4, 4 * h + b, sc, m); }
  __device__ static float d(const uint8_t* row) { return f16_at(row); }
  __device__ static float dmin(const uint8_t* row) { return f16_at(row + 2); }
};

// Q6_K (210 bytes: ql[128], qh[64], scales[16] int8, d): value o of half h, quarter q (a
// sub-block), l = o % 32: low bits nibble q / 2 of ql[64 h + 32 (q % 2) + l], high bits 2q,
// 2q + 1 of qh[32 h + l]; stored +32; one int8 scale per 16 values. A half uses ql[64 h, +64),
// qh[32 h, +32), scales[8 h, +8) and d. 210-byte blocks are only 2-byte aligned: each of those
// four regions is copied in 4-byte words from the word boundary at or before it, so it lands
// `lead` (0 or 2) bytes into its staged place, the same lead for all four (their offsets in the
// block are multiples of 4); the reader works the lead out from the block's address again.
struct Q6Rows {
  static constexpr bool kMins = false;
  static constexpr int kBlockBytes = 210, kRowBytes = 120;
  // Staged places (each 4 bytes longer than its region) and the regions in the block.
  static constexpr int kQl = 0, kQh = 68, kSc = 104, kD = 116;
  static constexpr int kWords = 17 + 9 + 3 + 1;  // words of each region, lead 2 included
  __device__ static int lead(const GemmArgs& a, const uint8_t* w, int row, int stage) {
    return int(reinterpret_cast<uintptr_t>(super_block(a, w, row, stage / kStagesPerSuper, kBlockBytes)) & 2);
  }
  __device__ static void issue(uint8_t* buf, const GemmArgs& a, const uint8_t* w, int row0, int stage, int tid) {
    const int h = stage % kStagesPerSuper;
    for (int i = tid; i < kRowsPerBlock * kWords; i += kThreads) {
      const int r = i / kWords, k = i % kWords;
      // Region: where it lands, where it starts in the block, its bytes; and the word within it.
      const int place = k < 17 ? kQl : k < 26 ? kQh : k < 29 ? kSc : kD;
      const int from = k < 17 ? 64 * h : k < 26 ? 128 + 32 * h : k < 29 ? 192 + 8 * h : 208;
      const int bytes = k < 17 ? 64 : k < 26 ? 32 : k < 29 ? 8 : 2;
      const int word = k < 17 ? k : k < 26 ? k - 17 : k < 29 ? k - 26 : 0;
      int src_bytes = 0;
      const uint8_t* src = w;
      if (row0 + r < a.rows) {
        const uint8_t* start = super_block(a, w, row0 + r, stage / kStagesPerSuper, kBlockBytes) + from;
        const uint8_t* aligned = start - (reinterpret_cast<uintptr_t>(start) & 2) + 4 * word;
        const ptrdiff_t left = start + bytes - aligned;  // the region's bytes from this word on
        src_bytes = left <= 0 ? 0 : left >= 4 ? 4 : int(left);
        if (src_bytes > 0) src = aligned;
      }
      cp_async(buf + r * kRowBytes + place + 4 * word, src, 4, src_bytes);
    }
  }
  // Levels less 32 (-32..31) of values 4t.. and 16 + 4t.. of sub-block b, the staged row read
  // `lead` bytes in.
  __device__ static void words(const uint8_t* row, int b, int t, int& lo, int& hi) {
    const uint8_t* ql = row + kQl + 32 * (b % 2) + 4 * t;
    const uint8_t* qh = row + kQh + 4 * t;
    const int ls = 4 * (b / 2), hs = 2 * b;
    auto level = [&](int at) {
      const unsigned l = (unsigned(word_at_a2(ql + at)) >> ls) & 0x0F0F0F0Fu;
      const unsigned u = (unsigned(word_at_a2(qh + at)) >> hs) & 0x03030303u;
      return int(__vsub4(l | (u << 4), 0x20202020u));
    };
    lo = level(0), hi = level(16);
  }
  // The int8 scales of sub-block b's two halves of 16, and d.
  __device__ static void scales(const uint8_t* row, int b, int& lo, int& hi) {
    lo = int(int8_t(row[kSc + 2 * b])), hi = int(int8_t(row[kSc + 2 * b + 1]));
  }
  __device__ static float d(const uint8_t* row) { return f16_at(row + kD); }
};

template <typename Rows>
constexpr int kKStageBytes = kRowsPerBlock * Rows::kRowBytes + kCols * kXPitch + kCols * (1 + 2 * kStageBlocks) * 4;

template <typename Rows>
__global__ void __launch_bounds__(kThreads) gemm_kquant_kernel(GemmArgs a) {
  wait_for_previous_kernels();
  allow_next_kernel();
  constexpr int kStageBytes = kKStageBytes<Rows>, kWBytes = kRowsPerBlock * Rows::kRowBytes;
  constexpr int kXInfo = 1 + 2 * kStageBlocks;  // per activation row: the scale, the stage's 8 sums of 16
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ int x_row[kCols], y_row[kCols];
  Tile tile;
  if (!load_tile<kCols>(a, x_row, y_row, tile)) return;
  const int tid = threadIdx.x, row0 = blockIdx.x * kRowsPerBlock;
  const uint8_t* w = a.w + size_t(tile.expert) * a.expert_stride;
  const int n_blocks = a.cols / 32, n_stages = n_blocks / kStageBlocks, n_super = a.cols / kSuperValues;

  auto issue = [&](int stage) {
    uint8_t* buf = smem + (stage % kPipeline) * kStageBytes;
    Rows::issue(buf, a, w, row0, stage, tid);
    uint8_t* xbuf = buf + kWBytes;
    stage_activation_values(xbuf, a, x_row, stage * kStageBlocks, n_blocks, tid);
    int* info = reinterpret_cast<int*>(xbuf + kCols * kXPitch);  // [kCols][kXInfo]
    for (int i = tid; i < kCols * kXInfo; i += kThreads) {
      const int c = i / kXInfo, k = i % kXInfo;
      const bool valid = x_row[c] >= 0;
      const void* src = k == 0 ? static_cast<const void*>(a.xs + size_t(x_row[c]) * n_super + stage / kStagesPerSuper)
                               : a.xsums + size_t(x_row[c]) * (a.cols / 16) + stage * 2 * kStageBlocks + k - 1;
      cp_async(info + i, valid ? src : a.xs, 4, valid ? 4 : 0);
    }
    cp_async_commit();
  };

  const int warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wm = (warp % 4) * 32, wn = (warp / 4) * kWarpCols;  // the warp's first row and column
  TileAccumulators acc = {};
  run_stages<kStageBytes>(smem, n_stages, issue, [&](int stage, const uint8_t* buf) {
    const uint8_t* xbuf = buf + kWBytes;
    const int* info = reinterpret_cast<const int*>(xbuf + kCols * kXPitch);
    const int h = stage % kStagesPerSuper;
    // The thread's four weight rows (i, top / bottom) as staged (Q6_K: read `lead` bytes in).
    const uint8_t* rows[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int r = wm + i * 16 + g + 8 * e;
        rows[i][e] = buf + r * Rows::kRowBytes;
        if constexpr (!Rows::kMins) rows[i][e] += Rows::lead(a, w, row0 + r, stage);
      }
    }
    int isum[2][kWarpTiles][4] = {};
    int mins[2][2][kStageBlocks] = {};  // Q4_K/Q5_K: the rows' sub-block minimums, for the scaling below
#pragma unroll
    for (int b = 0; b < kStageBlocks; ++b) {
      int bf[kWarpTiles][2];
#pragma unroll
      for (int j = 0; j < kWarpTiles; ++j) {
        const auto* xw = reinterpret_cast<const int*>(xbuf + (wn + j * 8 + g) * kXPitch + b * 32) + t;
        bf[j][0] = xw[0], bf[j][1] = xw[4];
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        int af[4];
        if constexpr (Rows::kMins) {
          Rows::words(rows[i][0], h, b, t, af[0], af[2]);
          Rows::words(rows[i][1], h, b, t, af[1], af[3]);
          int sc[2];
          Rows::scales(rows[i][0], h, b, sc[0], mins[i][0][b]);
          Rows::scales(rows[i][1], h, b, sc[1], mins[i][1][b]);
#pragma unroll
          for (int j = 0; j < kWarpTiles; ++j) {
            int c[4] = {0, 0, 0, 0};
            mma_s8(c, af, bf[j]);
#pragma unroll
            for (int e = 0; e < 4; ++e) isum[i][j][e] += sc[e / 2] * c[e];
          }
        } else {
          // A scale per 16 values: the first 16 of the sub-block (af[0], af[1]) and the second
          // (af[2], af[3]) in two products, the other half zero.
          Rows::words(rows[i][0], b, t, af[0], af[2]);
          Rows::words(rows[i][1], b, t, af[1], af[3]);
          int lo[2], hi[2];
          Rows::scales(rows[i][0], b, lo[0], hi[0]);
          Rows::scales(rows[i][1], b, lo[1], hi[1]);
          const int first[4] = {af[0], af[1], 0, 0}, second[4] = {0, 0, af[2], af[3]};
#pragma unroll
          for (int j = 0; j < kWarpTiles; ++j) {
            int c1[4] = {0, 0, 0, 0}, c2[4] = {0, 0, 0, 0};
            mma_s8(c1, first, bf[j]);
            mma_s8(c2, second, bf[j]);
#pragma unroll
            for (int e = 0; e < 4; ++e) isum[i][j][e] += lo[e / 2] * c1[e] + hi[e / 2] * c2[e];
          }
        }
      }
    }
    // The stage's integer sums, scaled: d dx isum (- dmin dx sum of m x the sub-block's sum).
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float d[2], dmin[2] = {0.0f, 0.0f};
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        d[e] = Rows::d(rows[i][e]);
        if constexpr (Rows::kMins) dmin[e] = Rows::dmin(rows[i][e]);
      }
#pragma unroll
      for (int j = 0; j < kWarpTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = wn + j * 8 + 2 * t + (e & 1);
          const float dx = __int_as_float(info[c * kXInfo]);
          float v = float(isum[i][j][e]) * (d[e / 2] * dx);
          if constexpr (Rows::kMins) {
            int msum = 0;
#pragma unroll
            for (int b = 0; b < kStageBlocks; ++b) {
              msum += mins[i][e / 2][b] * (info[c * kXInfo + 1 + 2 * b] + info[c * kXInfo + 2 + 2 * b]);
            }
            v -= float(msum) * (dmin[e / 2] * dx);
          }
          acc[i][j][e] += v;
        }
      }
    }
  });
  store_warp_tile(a, y_row, tile.count, row0 + wm, wn, g, t, acc);
}

template <typename Rows>
cudaError_t launch_kquant(const GemmArgs& a, unsigned row_blocks, unsigned tile_count, cudaStream_t stream) {
  const auto kernel = gemm_kquant_kernel<Rows>;
  constexpr int kBytes = kPipeline * kKStageBytes<Rows>;
  // The pipeline's stages in dynamic shared memory: past the 48 KiB default, so opt in.
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes);
  if (e != cudaSuccess) return e;
  launch(kernel, dim3(row_blocks, tile_count), kThreads, kBytes, stream, a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t gemm_tile::launch_gemm_kquant(GgmlType type, const GemmArgs& a, unsigned row_blocks, unsigned tile_count,
                               cudaStream_t stream) {
  switch (type) {
    case GgmlType::Q4_K: return launch_kquant<Q45Rows<false>>(a, row_blocks, tile_count, stream);
    case GgmlType::Q5_K: return launch_kquant<Q45Rows<true>>(a, row_blocks, tile_count, stream);
    case GgmlType::Q6_K: return launch_kquant<Q6Rows>(a, row_blocks, tile_count, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace moe::cuda
