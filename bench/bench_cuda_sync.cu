// What one step of a decode chain costs on its own, before any work: the price a launch boundary
// puts on the chain, against the grid-wide barrier a persistent kernel would put there instead.
// A decode layer is 7-8 launches of a few microseconds (docs/cuda.md); whether fusing a layer
// into one persistent kernel could pay depends on these two numbers.
//   launch_pdl_us      200 launches of an empty kernel in a CUDA graph, each waiting for the one
//                      before (programmatic dependent launch, as the decode graph runs them)
//   barrier_us         one kernel crossing 200 grid-wide barriers (a counter and a generation
//                      in global memory; every block resident), per barrier
//   cg_grid_sync_us    the same with cooperative groups' grid sync (a cooperative launch)
// One block a streaming multiprocessor, 512 threads, as a layer's kernels mostly run. Medians of
// --reps replays. Prints one JSON object.
//   bench_cuda_sync [--reps N]
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdio>

#include "cuda_timing.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/launch.cuh"

namespace moe {
namespace {

constexpr int kSteps = 200, kThreads = 512;

__global__ void empty_kernel() {
  cuda::wait_for_previous_kernels();
  cuda::allow_next_kernel();
}

// Thread 0 of each block counts its block in; the last one resets the count and moves the
// generation on, the others wait for it to move. The generation is read before counting in,
// and cannot move before every block has counted in.
__device__ void grid_barrier(unsigned* count, unsigned* generation) {
  __syncthreads();
  if (threadIdx.x == 0) {
    volatile unsigned* gen = generation;
    const unsigned seen = *gen;
    __threadfence();
    if (atomicAdd(count, 1u) == gridDim.x - 1) {
      *count = 0;
      __threadfence();
      atomicAdd(generation, 1u);
    } else {
      while (*gen == seen) {
      }
    }
    __threadfence();
  }
  __syncthreads();
}

__global__ void barrier_kernel(unsigned* count, unsigned* generation) {
  for (int i = 0; i < kSteps; ++i) grid_barrier(count, generation);
}

__global__ void cg_sync_kernel() {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int i = 0; i < kSteps; ++i) grid.sync();
}

int run(int reps) {
  int device = 0, sms = 0, cooperative = 0, per_sm = 0;
  MOE_CUDA_CHECK(cudaGetDevice(&device));
  MOE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  MOE_CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  MOE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, barrier_kernel, kThreads, 0));
  if (per_sm < 1) {
    std::fprintf(stderr, "bench_cuda_sync: a block of %d threads does not fit a multiprocessor\n", kThreads);
    return 1;
  }
  cudaStream_t stream;
  MOE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  cudaGraph_t graph = nullptr;
  MOE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kSteps; ++i) MOE_CUDA_CHECK(cuda::launch(empty_kernel, unsigned(sms), kThreads, 0, stream));
  MOE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  MOE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double launch_us =
      bench::median_us(stream, reps, kSteps, [&] { MOE_CUDA_CHECK(cudaGraphLaunch(exec, stream)); });
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);

  unsigned* state = nullptr;  // count, generation
  MOE_CUDA_CHECK(cudaMalloc(&state, 2 * sizeof(unsigned)));
  MOE_CUDA_CHECK(cudaMemset(state, 0, 2 * sizeof(unsigned)));
  const double barrier_us = bench::median_us(stream, reps, kSteps, [&] {
    barrier_kernel<<<sms, kThreads, 0, stream>>>(state, state + 1);
    MOE_CUDA_CHECK(cudaGetLastError());
  });
  MOE_CUDA_CHECK(cudaFree(state));

  double cg_us = -1;
  if (cooperative) {
    cg_us = bench::median_us(stream, reps, kSteps, [&] {
      MOE_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(cg_sync_kernel), dim3(unsigned(sms)),
                                                 dim3(kThreads), nullptr, 0, stream));
    });
  }
  MOE_CUDA_CHECK(cudaStreamDestroy(stream));
  std::printf("{\n  \"blocks\": %d,\n  \"threads\": %d,\n  \"steps\": %d,\n", sms, kThreads, kSteps);
  std::printf("  \"launch_pdl_us\": %.3f,\n  \"barrier_us\": %.3f,\n  \"cg_grid_sync_us\": %.3f\n}\n", launch_us,
              barrier_us, cg_us);
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  return moe::bench::guarded("bench_cuda_sync", [&] { return moe::run(moe::bench::reps_option(argc, argv)); });
}
