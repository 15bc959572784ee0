#include <cmath>

#include "ops/cuda/ops.h"

namespace moe::cuda {

std::vector<double> rope_frequencies(int n_rot, float base) {
  std::vector<double> freq(static_cast<size_t>(n_rot / 2));
  // The CPU's angle is pos * pow(base, -2i / n_rot) (rope_neox in models/blocks.cpp).
  for (int i = 0; i < n_rot / 2; ++i) freq[size_t(i)] = std::pow(double(base), -2.0 * i / n_rot);
  return freq;
}

}  // namespace moe::cuda
