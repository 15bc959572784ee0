#include "models/synth/random_weights.h"

#include <algorithm>
#include <cmath>

namespace moe::synth {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

constexpr float kNormLow = 0.5f, kNormHigh = 1.5f;                // ordinary norm weights
constexpr float kNormOutlierLow = 2.0f, kNormOutlierHigh = 3.0f;  // norm weights on outlier channels
constexpr float kEmbeddingOutlierScale = 6.0f;                    // outlier magnitude, in noise std
constexpr float kEmbeddingOutlierJitter = 0.25f;                  // relative spread of that magnitude

// The fixed sign of an outlier channel, the same for every token.
float outlier_sign(uint64_t seed, uint32_t channel) {
  return (mix64(seed ^ mix64(0x5157454E53494E47ull + channel)) & 1) ? 1.0f : -1.0f;
}

// Acklam's rational approximation of the inverse normal CDF (relative error < 1.2e-9).
double inverse_normal_cdf(double p) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                 6.680131188771972e+01, -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                 -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                 3.754408661907416e+00};
  constexpr double kLow = 0.02425;
  if (p < kLow || p > 1 - kLow) {
    const double q = std::sqrt(-2 * std::log(p < kLow ? p : 1 - p));
    const double x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
                     ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    return p < kLow ? x : -x;
  }
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

// 65537 points of the inverse CDF at p = k / 65536; the two infinite ends are replaced by the
// quantiles of the outermost half cells, so every cell is a finite linear piece.
const std::vector<float>& normal_quantiles() {
  static const std::vector<float> table = [] {
    constexpr int kCells = 65536;
    std::vector<float> t(kCells + 1);
    for (int k = 1; k < kCells; ++k) t[size_t(k)] = float(inverse_normal_cdf(double(k) / kCells));
    t[kCells] = float(inverse_normal_cdf(1.0 - 0.5 / kCells));
    t[0] = -t[kCells];
    return t;
  }();
  return table;
}

}  // namespace

uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t hash_name(std::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : name) h = (h ^ uint8_t(c)) * 0x100000001B3ull;
  return mix64(h);
}

RowRng::RowRng(uint64_t seed, uint64_t tensor_key, uint64_t row)
    : state_(mix64(mix64(seed + kGolden) ^ tensor_key) ^ mix64(row * kGolden + 1)) {}

uint64_t RowRng::next_u64() {
  state_ += kGolden;
  return mix64(state_);
}

float RowRng::uniform() { return float(next_u64() >> 40) * (1.0f / 16777216.0f); }

float RowRng::normal() {
  uint32_t bits;
  if (has_spare_) {
    bits = spare_bits_;
    has_spare_ = false;
  } else {
    const uint64_t r = next_u64();
    bits = uint32_t(r);
    spare_bits_ = uint32_t(r >> 32);
    has_spare_ = true;
  }
  const float* table = normal_quantiles().data();
  const uint32_t cell = bits >> 16;
  const float t = float(bits & 0xFFFF) * (1.0f / 65536.0f);
  return table[cell] + t * (table[cell + 1] - table[cell]);
}

std::vector<uint32_t> outlier_channels(uint64_t seed, uint32_t n_embd) {
  const uint32_t count = std::min(n_embd, std::max(2u, n_embd / 512));
  std::vector<uint32_t> channels;
  RowRng rng(seed, hash_name("outlier_channels"), 0);
  while (channels.size() < count) {
    const auto c = uint32_t(rng.next_u64() % n_embd);
    if (std::find(channels.begin(), channels.end(), c) == channels.end()) channels.push_back(c);
  }
  std::sort(channels.begin(), channels.end());
  return channels;
}

void fill_row(const WeightRecipe& recipe, uint64_t seed, uint64_t row_key, uint64_t row,
              std::span<const uint32_t> outliers, std::span<float> out) {
  RowRng rng(seed, row_key, row);
  switch (recipe.distribution) {
    case Distribution::Gaussian:
      for (float& x : out) x = recipe.std * rng.normal();
      return;
    case Distribution::NormWeight:
      for (float& x : out) x = kNormLow + (kNormHigh - kNormLow) * rng.uniform();
      if (recipe.with_outliers) {
        for (uint32_t c : outliers) {
          if (c < out.size()) out[c] = kNormOutlierLow + (kNormOutlierHigh - kNormOutlierLow) * rng.uniform();
        }
      }
      return;
    case Distribution::Embedding:
      for (float& x : out) x = recipe.std * rng.normal();
      if (recipe.with_outliers) {
        for (uint32_t c : outliers) {
          if (c >= out.size()) continue;
          const float magnitude = kEmbeddingOutlierScale * recipe.std * (1.0f + kEmbeddingOutlierJitter * rng.normal());
          out[c] = outlier_sign(seed, c) * magnitude;
        }
      }
      return;
    case Distribution::Uniform:
      for (float& x : out) x = recipe.low + (recipe.high - recipe.low) * rng.uniform();
      return;
  }
}

}  // namespace moe::synth
