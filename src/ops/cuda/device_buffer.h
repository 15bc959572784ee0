#pragma once
// RAII owners of device memory and of pinned (page-locked) host memory: the latter is what the
// GPU copies to and from asynchronously, and what a captured graph's copies may read and write.
#include <cstddef>
#include <utility>

namespace moe::cuda {

namespace detail {
struct DeviceAllocator {
  static void* allocate(size_t bytes);  // cudaMalloc, throws moe::Error
  static void release(void* p) noexcept;
};
struct PinnedAllocator {
  static void* allocate(size_t bytes);  // cudaHostAlloc, throws moe::Error
  static void release(void* p) noexcept;
};
}  // namespace detail

template <typename Allocator>
class CudaMemory {
 public:
  CudaMemory() = default;
  explicit CudaMemory(size_t bytes) : ptr_(bytes ? Allocator::allocate(bytes) : nullptr), bytes_(bytes) {}
  ~CudaMemory() {
    if (ptr_) Allocator::release(ptr_);
  }
  CudaMemory(CudaMemory&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  CudaMemory& operator=(CudaMemory&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  CudaMemory(const CudaMemory&) = delete;
  CudaMemory& operator=(const CudaMemory&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = CudaMemory<detail::DeviceAllocator>;
using PinnedBuffer = CudaMemory<detail::PinnedAllocator>;

}  // namespace moe::cuda
