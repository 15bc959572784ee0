#include "engine/routing_locality.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace moe {
namespace {

// Prefix sums of (d + a)^-b for d < n.
std::vector<double> depth_prefix(int n, double a, double b) {
  std::vector<double> prefix(size_t(n) + 1, 0.0);
  for (int d = 0; d < n; ++d) prefix[size_t(d) + 1] = prefix[size_t(d)] + std::pow(d + a, -b);
  return prefix;
}

double share_below(const std::vector<double>& prefix, int depth) {
  return prefix[size_t(std::clamp<int64_t>(depth, 0, int64_t(prefix.size()) - 1))] / prefix.back();
}

// (a, b) for which the depths below c1 and c2 carry h1 and h2 of the weight, and how far off the
// closer fit is: for each offset a (log-spaced) the exponent b that gives the first share (the
// share below c1 grows with b), keeping the a that comes closest to the second.
struct DepthFit {
  double a = 1, b = 1, error = 1e9;
};
DepthFit fit_depths(int n, int c1, double h1, int c2, double h2) {
  DepthFit best;
  for (int i = 0; i <= 200; ++i) {
    const double a = std::pow(10.0, -1.0 + 4.0 * i / 200);  // 0.1 .. 1000
    double lo = 0.0, hi = 8.0;
    for (int step = 0; step < 40; ++step) {
      const double mid = 0.5 * (lo + hi);
      (share_below(depth_prefix(n, a, mid), c1) < h1 ? lo : hi) = mid;
    }
    const double b = 0.5 * (lo + hi);
    const auto prefix = depth_prefix(n, a, b);
    const double error = std::max(std::fabs(share_below(prefix, c1) - h1), std::fabs(share_below(prefix, c2) - h2));
    if (error < best.error) best = {a, b, error};
  }
  return best;
}

}  // namespace

RoutingLocality::RoutingLocality(int n_expert, int k, double share_1, double hit_1, double share_2, double hit_2)
    : k_(k) {
  if (n_expert < 2 || k < 1 || k >= n_expert || !(share_1 > 0 && share_1 < share_2 && share_2 < 1) ||
      !(hit_1 > share_1 && hit_1 < hit_2 && hit_2 < 1)) {
    fail("routing locality: {} of {} experts a token, LRU shares {} and {} hitting {} and {} (want k below the "
         "expert count, 0 < share_1 < share_2 < 1 and share_1 < hit_1 < hit_2 < 1)",
         k, n_expert, share_1, share_2, hit_1, hit_2);
  }
  const int c1 = std::max(1, int(std::lround(share_1 * n_expert)));
  const int c2 = std::max(c1 + 1, int(std::lround(share_2 * n_expert)));
  // The depth weights set the first pick of a token; the k - 1 others, distinct from it, reach
  // a little deeper. So fit the weights to targets moved by what the simulation misses by.
  double t1 = hit_1, t2 = hit_2, error = 1;
  for (int round = 0; round < 10 && error > 0.003; ++round) {
    const DepthFit f = fit_depths(n_expert, c1, t1, c2, t2);
    prefix_ = depth_prefix(n_expert, f.a, f.b);
    const std::vector<double> hits = simulate_lru(6000, 1);
    const double r1 = hits[size_t(c1)], r2 = hits[size_t(c2)];
    const double off = std::max(std::fabs(r1 - hit_1), std::fabs(r2 - hit_2));
    if (off < error) error = off, a_ = f.a, b_ = f.b, lru_hits_ = hits;  // the best round so far
    t1 = std::clamp(t1 + hit_1 - r1, share_1 + 1e-3, 0.999);
    t2 = std::clamp(t2 + hit_2 - r2, t1 + 1e-3, 0.999);
  }
  prefix_ = depth_prefix(n_expert, a_, b_);
  if (error > 0.01) {
    fail("routing locality: no depth weights (d + a)^-b over {} experts, {} a token, give LRU hit rates {} at {} and "
         "{} at {} (closest: {:.3f} off)",
         n_expert, k, hit_1, c1, hit_2, c2, error);
  }
}

double RoutingLocality::lru_hit_rate(int slots) const {
  return lru_hits_[size_t(std::clamp(slots, 0, n_expert()))];
}

std::vector<double> RoutingLocality::simulate_lru(int tokens, uint64_t seed) const {
  const int n = n_expert(), warmup = std::min(1000, tokens / 10);
  Layer layer(*this, seed);
  std::vector<int> lru(static_cast<size_t>(n));  // experts, the last used first, updated pick by pick
  std::iota(lru.begin(), lru.end(), 0);
  std::vector<uint64_t> at_depth(size_t(n), 0);
  uint64_t picks = 0;
  for (int t = 0; t < tokens; ++t) {
    for (int e : layer.next(k_)) {
      const auto it = std::find(lru.begin(), lru.end(), e);
      if (t >= warmup) ++at_depth[size_t(it - lru.begin())], ++picks;
      std::rotate(lru.begin(), it, it + 1);
    }
  }
  std::vector<double> hits(size_t(n) + 1, 0.0);  // hits[C]: picks at depths below C
  for (int d = 0; d < n; ++d) hits[size_t(d) + 1] = hits[size_t(d)] + double(at_depth[size_t(d)]) / double(picks);
  return hits;
}

RoutingLocality::Layer::Layer(const RoutingLocality& model, uint64_t seed) : model_(&model), rng_(seed) {
  stack_.resize(size_t(model.n_expert()));
  std::iota(stack_.begin(), stack_.end(), 0);
  std::shuffle(stack_.begin(), stack_.end(), rng_);
}

std::vector<int> RoutingLocality::Layer::next(int k) {
  const int n = int(stack_.size());
  if (k < 1 || k > n) fail("routing locality: {} experts a token of {}", k, n);
  const std::vector<double>& prefix = model_->prefix_;
  std::vector<int> depths;  // the picked depths, in the stack as it was before this token
  depths.reserve(size_t(k));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  while (int(depths.size()) < k) {
    // A depth by its weight; one already picked for this token is drawn again (the same as
    // drawing from the weights of the depths left).
    const double u = unit(rng_) * prefix.back();
    const int d = int(std::upper_bound(prefix.begin() + 1, prefix.end(), u) - prefix.begin()) - 1;
    if (std::find(depths.begin(), depths.end(), d) == depths.end()) depths.push_back(d);
  }
  std::vector<int> experts(static_cast<size_t>(k));
  for (int i = 0; i < k; ++i) experts[size_t(i)] = stack_[size_t(depths[size_t(i)])];
  // The picked experts move to the top of the stack, the first pick first.
  std::vector<int> rest;
  rest.reserve(stack_.size());
  for (int e : stack_) {
    if (std::find(experts.begin(), experts.end(), e) == experts.end()) rest.push_back(e);
  }
  std::copy(experts.begin(), experts.end(), stack_.begin());
  std::copy(rest.begin(), rest.end(), stack_.begin() + k);
  return experts;
}

LocalRouting::LocalRouting(const RoutingLocality& model, int n_layer, uint64_t seed) : k_(model.k()) {
  for (int il = 0; il < n_layer; ++il) layers_.emplace_back(model, seed + uint64_t(il) * 0x9E3779B97F4A7C15ull);
}

void LocalRouting::route(int layer, int n, std::span<int32_t> experts) {
  MOE_ASSERT(experts.size() == size_t(n) * size_t(k_));
  for (int t = 0; t < n; ++t) {
    const std::vector<int> picks = layers_.at(size_t(layer)).next(k_);
    std::copy(picks.begin(), picks.end(), experts.begin() + ptrdiff_t(t) * k_);
  }
}

}  // namespace moe
