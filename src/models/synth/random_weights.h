#pragma once
// Deterministic random weights, generated one row at a time.
//
// Every row has its own random stream, seeded by hashing (seed, tensor name, row index)
// through splitmix64, so rows can be generated in any order on any number of threads and the
// file is identical bit for bit whatever the thread count. Keying by the tensor *name* rather
// than its position also makes blk.0 of a 4-layer file identical to blk.0 of a 48-layer one.
//
// The distributions (see docs/synth.md for the reasoning):
//   Gaussian     N(0, std^2); std is 1/sqrt(fan_in) for the projections, so a unit-RMS input
//                gives unit-variance outputs, and larger for the router and the LM head.
//   NormWeight   U(0.5, 1.5) per channel; on the few "outlier" channels U(2, 3).
//   Uniform      U(low, high): delta-net decay rates and time-step biases.
//   Embedding    N(0, std^2), except on the outlier channels, where every token carries a
//                large value of a fixed sign (6 std, +-25%): the "massive activation" channels
//                of real LLMs, which stress quantization blocks and the RMSNorm.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace moe::synth {

// splitmix64's finalizer: a bijective 64-bit mix with full avalanche.
uint64_t mix64(uint64_t x);
// FNV-1a of a string, mixed: the per-tensor part of a row's key.
uint64_t hash_name(std::string_view name);

// One row's stream of uniform and Gaussian numbers.
class RowRng {
 public:
  RowRng(uint64_t seed, uint64_t tensor_key, uint64_t row);
  uint64_t next_u64();
  float uniform();  // [0, 1), 24 random bits
  // N(0, 1) by inverting the normal CDF: 16 bits pick a cell of a 65536-quantile table and
  // 16 more interpolate inside it (two values per 64-bit draw, no branches, ~1 ns). The
  // result is Gaussian to within 1e-4 in variance, with tails cut at 4.4 sigma (real
  // weights are quantized to 4-8 bits anyway).
  float normal();

 private:
  uint64_t state_;
  uint32_t spare_bits_ = 0;
  bool has_spare_ = false;
};

enum class Distribution { Gaussian, NormWeight, Embedding, Uniform };

struct WeightRecipe {
  Distribution distribution = Distribution::Gaussian;
  float std = 0;               // Gaussian and Embedding
  float low = 0, high = 0;     // Uniform
  bool with_outliers = false;  // NormWeight and Embedding: boost the outlier channels
};

// The channels of the residual stream that carry outliers: max(2, n_embd / 512) of them,
// chosen by the seed, sorted. Shared by the embedding and every n_embd-sized norm weight.
std::vector<uint32_t> outlier_channels(uint64_t seed, uint32_t n_embd);

// Fills one row. `outliers` are channel indices (may be empty); `row_key` is hash_name(tensor).
void fill_row(const WeightRecipe& recipe, uint64_t seed, uint64_t row_key, uint64_t row,
              std::span<const uint32_t> outliers, std::span<float> out);

}  // namespace moe::synth
