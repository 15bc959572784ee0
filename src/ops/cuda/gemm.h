#pragma once
// Weight matrix times many activation rows on the GPU: the prefill product.
//   y[j][r] (+)= sum_i W[r][i] * x[j][i]
// Float weights (F32, F16, BF16: routers, float models) with f32 activations in f32 tiles;
// Q8_0 and Q4_0 weights (block of 32, one scale) with Q8_0 activations (activations.h):
// per 32-value block the int8 products run on the tensor cores (mma m16n8k32), and the block's
// int32 sum is scaled by the weight's and the activation's scales in f32, as the CPU's
// vec_dot does; Q4_K, Q5_K and Q6_K weights (super-blocks of 256) with Q8_K activations, their
// sub-blocks' int32 sums scaled by the integer sub-block scales and summed in int32 over half a
// super-block first. Tiles of 128 weight rows x 64 activation rows, so a weight is read once per 64
// tokens instead of once per 8 (matvec.h). Needs compute capability 8.0 (the callers use the
// matvec kernels elsewhere). Checked against the CPU in tests/cuda/test_cuda_gemm.cpp.
//
// The MoE form groups the (token, rank) rows by expert first: group_by_expert() sorts the row
// ids by expert and cuts each expert's rows into tiles; gemm_experts() then runs one tile of
// up to 64 rows through its expert per thread block, without the host knowing the counts (no
// synchronisation, graph-capturable).
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "core/ggml_type.h"
#include "ops/cuda/activations.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/layout.h"

namespace moe::cuda {

constexpr int kGemmTileRows = 64;  // activation rows per tile (dense products and expert tiles)

// Q8_0 and Q4_0 with a multiple of 64 columns, the K-quants with whole super-blocks; F32, F16,
// BF16 (a plain f32 tile kernel).
bool has_gemm(GgmlType type, int64_t cols);
// Whether the current device has the tensor-core instructions the GEMM uses.
bool device_has_gemm();

// Dense: y[t] (+)= W x[t] for all x.n_tok rows. Throws moe::Error for an unsupported type or
// mismatched operands.
void gemm(GgmlType type, const void* w, size_t row_stride, int64_t rows, const DeviceActivations& x, float* y,
          cudaStream_t stream, bool accumulate = false, GpuLayout layout = GpuLayout::Gguf);

// One tile of an expert's rows: sorted ids [first, first + count) of `perm`.
struct ExpertTile {
  int32_t expert, first, count;
};

// The (token, rank) rows of a step sorted by expert, in device memory; sized for n_rows rows
// and n_expert experts by reserve().
class ExpertGroups {
 public:
  // Sorts experts[j] (j < n_rows, device int32) into perm and tiles, asynchronously. Rows
  // with an id < 0 (computed elsewhere) are in no tile: gemm_experts() leaves them alone.
  void build(const int32_t* experts, int n_rows, int n_expert, cudaStream_t stream);
  const int32_t* perm() const { return perm_.as<int32_t>(); }
  const ExpertTile* tiles() const { return tiles_.as<ExpertTile>(); }
  const int32_t* n_tiles() const { return n_tiles_.as<int32_t>(); }
  int max_tiles() const { return max_tiles_; }

 private:
  DeviceBuffer perm_, tiles_, n_tiles_;
  int max_tiles_ = 0;
};

// y[j] = W_{experts[j]} x[j / x_row_div] for every row j of `groups` (matvec_experts()'s
// contract, its rows grouped by expert).
void gemm_experts(GgmlType type, const void* w, size_t expert_stride, size_t row_stride, int64_t rows,
                  const DeviceActivations& x, int x_row_div, const ExpertGroups& groups, float* y,
                  cudaStream_t stream, GpuLayout layout = GpuLayout::Gguf);

// The launches (gemm.cu).
cudaError_t launch_group_by_expert(const int32_t* experts, int n_rows, int n_expert, int32_t* perm, ExpertTile* tiles,
                                   int32_t* n_tiles, cudaStream_t stream);
cudaError_t launch_gemm(GgmlType type, GpuLayout layout, const void* w, size_t expert_stride, size_t row_stride,
                        int64_t rows,
                        const DeviceActivations& x, int x_row_div, const int32_t* perm, const ExpertTile* tiles,
                        const int32_t* n_tiles, int max_tiles, float* y, bool accumulate, cudaStream_t stream);

}  // namespace moe::cuda
