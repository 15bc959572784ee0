#include "ops/cuda/device.h"

#include <cuda_runtime.h>

#include <algorithm>

namespace moe::cuda {

double peak_memory_gb_s(int device) {
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

double measure_host_read_gb_s(int device, size_t bytes, int copies) {
  void *host = nullptr, *dev = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  double best = 0;
  if (cudaSetDevice(device) == cudaSuccess && cudaHostAlloc(&host, bytes, cudaHostAllocDefault) == cudaSuccess &&
      cudaMalloc(&dev, bytes) == cudaSuccess && cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess &&
      cudaEventCreate(&start) == cudaSuccess && cudaEventCreate(&stop) == cudaSuccess) {
    for (int i = 0; i <= copies; ++i) {  // the first copy warms the path up, untimed
      cudaEventRecord(start, stream);
      cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream);
      cudaEventRecord(stop, stream);
      float ms = 0;
      if (cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) break;
      if (i > 0 && ms > 0) best = std::max(best, double(bytes) / 1e6 / ms);
    }
  }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (stream) cudaStreamDestroy(stream);
  if (dev) cudaFree(dev);
  if (host) cudaFreeHost(host);
  cudaGetLastError();  // a failure above leaves no sticky error behind
  return best;
}

GpuList list_gpus() {
  GpuList out;
  cudaRuntimeGetVersion(&out.runtime_version);
  if (cudaDriverGetVersion(&out.driver_version) != cudaSuccess || out.driver_version == 0) {
    out.reason = "no CUDA driver";
    return out;
  }
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    out.reason = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuInfo g;
    g.index = i;
    g.name = prop.name;
    g.cc_major = prop.major;
    g.cc_minor = prop.minor;
    g.total_bytes = prop.totalGlobalMem;
    g.multiprocessors = prop.multiProcessorCount;
    g.memory_gb_s = peak_memory_gb_s(i);
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) g.free_bytes = free_b;
    out.gpus.push_back(g);
  }
  if (out.gpus.empty()) out.reason = "no CUDA devices";
  return out;
}

}  // namespace moe::cuda
