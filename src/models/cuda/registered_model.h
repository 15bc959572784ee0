#pragma once
// The model file's mapping registered with the CUDA driver: pinned and read-only, so copies from
// it run at the link's speed (expert_stream.h) and kernels read it over PCIe (the hybrid's
// PCIe experts), with no second copy of the model in RAM.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "gguf/reader.h"

namespace moe::cuda {

class RegisteredModel {
 public:
  // Registers every shard of `reader`; nullptr with *why set where the driver cannot (no
  // read-only registration, an unmapped model, the call failing).
  static std::unique_ptr<RegisteredModel> create(const gguf::Reader& reader, std::string* why);
  ~RegisteredModel();
  RegisteredModel(const RegisteredModel&) = delete;
  RegisteredModel& operator=(const RegisteredModel&) = delete;

  // The address kernels use for `host`, a byte of the mapping. Throws outside it.
  const std::byte* device(const std::byte* host) const;
  double seconds() const { return seconds_; }  // how long registering took

 private:
  RegisteredModel() = default;
  struct Range {
    const std::byte* host = nullptr;
    size_t size = 0;
    const std::byte* device = nullptr;
  };
  std::vector<Range> ranges_;
  double seconds_ = 0;
};

}  // namespace moe::cuda
