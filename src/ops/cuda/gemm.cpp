#include "ops/cuda/gemm.h"

#include "core/error.h"
#include "ops/cpu/vec_dot.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/launch.cuh"

namespace moe::cuda {

bool has_gemm(GgmlType type, int64_t cols) {
  switch (type) {
    case GgmlType::Q8_0:
    case GgmlType::Q4_0: return cols % 64 == 0;  // rows of whole 4-byte words for the staged copies
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return cols % 256 == 0;  // whole super-blocks (as their format has)
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: return true;
    default: return false;
  }
}

bool device_has_gemm() { return device_compute_major() >= 8; }

namespace {

void check(const char* what, GgmlType type, size_t row_stride, const DeviceActivations& x, GpuLayout layout) {
  if (layout == GpuLayout::Q8_0Split && type != GgmlType::Q8_0) {
    fail("{}: the split layout is for Q8_0 weights, not {}", what, type_name(type));
  }
  if (x.cols <= 0 || x.cols > (int64_t(1) << 30)) fail("{}: {} columns", what, x.cols);
  if (!has_gemm(type, x.cols)) fail("{}: no GEMM kernel for {} weights of {} columns", what, type_name(type), x.cols);
  if (x.type != vec_dot_type(type)) {
    fail("{}: {} weights need {} activations, got {}", what, type_name(type), type_name(vec_dot_type(type)),
         type_name(x.type));
  }
  const size_t need = layout == GpuLayout::Q8_0Split ? q8_0_split_stride(x.cols) : row_bytes(type, uint64_t(x.cols));
  if (row_stride < need) {
    fail("{}: row stride {} is shorter than a {} row of {} values", what, row_stride, type_name(type), x.cols);
  }
}

}  // namespace

void gemm(GgmlType type, const void* w, size_t row_stride, int64_t rows, const DeviceActivations& x, float* y,
          cudaStream_t stream, bool accumulate, GpuLayout layout) {
  check("gemm", type, row_stride, x, layout);
  if (int64_t(x.n_tok) > int64_t(kGemmTileRows) * 65535) fail("gemm: {} activation rows in one call", x.n_tok);
  MOE_CUDA_CHECK(
      launch_gemm(type, layout, w, 0, row_stride, rows, x, 1, nullptr, nullptr, nullptr, 0, y, accumulate, stream));
}

void ExpertGroups::build(const int32_t* experts, int n_rows, int n_expert, cudaStream_t stream) {
  if (n_expert <= 0 || n_expert > 1024) fail("expert groups: {} experts (1 to 1024)", n_expert);
  // Each expert's last tile may be partial: at most n_rows / 64 full tiles plus one per expert.
  max_tiles_ = n_rows / kGemmTileRows + std::min(n_rows, n_expert);
  if (perm_.bytes() < size_t(n_rows) * sizeof(int32_t)) perm_ = DeviceBuffer(size_t(n_rows) * sizeof(int32_t));
  if (tiles_.bytes() < size_t(max_tiles_) * sizeof(ExpertTile)) tiles_ = DeviceBuffer(size_t(max_tiles_) * sizeof(ExpertTile));
  if (n_tiles_.bytes() == 0) n_tiles_ = DeviceBuffer(sizeof(int32_t));
  MOE_CUDA_CHECK(launch_group_by_expert(experts, n_rows, n_expert, perm_.as<int32_t>(), tiles_.as<ExpertTile>(),
                                        n_tiles_.as<int32_t>(), stream));
}

void gemm_experts(GgmlType type, const void* w, size_t expert_stride, size_t row_stride, int64_t rows,
                  const DeviceActivations& x, int x_row_div, const ExpertGroups& groups, float* y,
                  cudaStream_t stream, GpuLayout layout) {
  check("gemm_experts", type, row_stride, x, layout);
  if (x_row_div < 1) fail("gemm_experts: x_row_div {} (at least 1)", x_row_div);
  if (expert_stride < row_stride * size_t(rows)) {
    fail("gemm_experts: expert stride {} is shorter than {} rows of {} bytes", expert_stride, rows, row_stride);
  }
  MOE_CUDA_CHECK(launch_gemm(type, layout, w, expert_stride, row_stride, rows, x, x_row_div, groups.perm(), groups.tiles(),
                             groups.n_tiles(), groups.max_tiles(), y, false, stream));
}

}  // namespace moe::cuda
