#include "models/cuda/registered_model.h"

#include <unistd.h>

#include <chrono>

#include <cuda_runtime.h>

#include "core/error.h"
#include "core/units.h"
#include "ops/cuda/cuda_check.h"

namespace moe::cuda {

std::unique_ptr<RegisteredModel> RegisteredModel::create(const gguf::Reader& reader, std::string* why) {
  int device = 0, read_only = 0;
  MOE_CUDA_CHECK(cudaGetDevice(&device));
  MOE_CUDA_CHECK(cudaDeviceGetAttribute(&read_only, cudaDevAttrHostRegisterReadOnlySupported, device));
  if (!read_only) {
    *why = "the driver cannot register read-only host memory";
    return nullptr;
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<RegisteredModel> r(new RegisteredModel());
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  for (size_t i = 0; i < reader.n_files(); ++i) {
    const gguf::File& file = reader.file(i);
    if (file.mapping() == nullptr) {
      *why = "the model is not mapped";
      return nullptr;  // the destructor unregisters what was registered
    }
    auto* base = const_cast<std::byte*>(file.bytes().data());
    const size_t size = (file.bytes().size() + page - 1) / page * page;
    const cudaError_t e =
        cudaHostRegister(base, size, cudaHostRegisterReadOnly | cudaHostRegisterMapped | cudaHostRegisterPortable);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it
      *why = fmt::format("registering {} of {} with the driver failed: {}", format_bytes(size), file.path(),
                         cudaGetErrorString(e));
      return nullptr;
    }
    void* dev = nullptr;
    r->ranges_.push_back({base, size, nullptr});
    MOE_CUDA_CHECK(cudaHostGetDevicePointer(&dev, base, 0));
    r->ranges_.back().device = static_cast<const std::byte*>(dev);
  }
  r->seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

RegisteredModel::~RegisteredModel() {
  for (const Range& range : ranges_) cudaHostUnregister(const_cast<std::byte*>(range.host));
}

const std::byte* RegisteredModel::device(const std::byte* host) const {
  for (const Range& range : ranges_) {
    if (host >= range.host && host < range.host + range.size) return range.device + (host - range.host);
  }
  fail("registered model: address {} is not in the model's mapping", static_cast<const void*>(host));
}

}  // namespace moe::cuda
