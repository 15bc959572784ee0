// The attention kernel: every SIMD level against a double-precision softmax(q.k) v on fresh
// random data with odd lengths, and the levels against each other bit for bit.
#include <cmath>

#include "ops/cpu/attend.h"
#include "ops_test_util.h"

namespace moe {
namespace {

struct Case {
  int group, head_dim;
  int64_t visible;
};

TEST(Attend, MatchesReferenceAtEveryLevel) {
  SEED_TRACE();
  std::mt19937 rng(test::test_seed());
  for (const Case c : {Case{1, 16, 1}, Case{8, 128, 37}, Case{2, 64, 300}, Case{3, 40, 17}, Case{4, 128, 1000}}) {
    SCOPED_TRACE("group " + std::to_string(c.group) + " head_dim " + std::to_string(c.head_dim) + " visible " +
                 std::to_string(c.visible));
    const size_t stride = size_t(c.head_dim) * 3;  // rows of a wider KV cache: this head is one slice
    const auto q = test::random_floats(rng, size_t(c.group) * c.head_dim, 0.5f);
    const auto keys = test::random_floats(rng, size_t(c.visible) * stride);
    const auto values = test::random_floats(rng, size_t(c.visible) * stride);
    const float scale = 1.0f / std::sqrt(float(c.head_dim));

    std::vector<double> expected(size_t(c.group) * c.head_dim, 0.0);
    for (int h = 0; h < c.group; ++h) {
      std::vector<double> s(size_t(c.visible));
      double max_s = -INFINITY, sum = 0;
      for (int64_t p = 0; p < c.visible; ++p) {
        for (int i = 0; i < c.head_dim; ++i) s[p] += double(q[size_t(h) * c.head_dim + i]) * keys[p * stride + i];
        s[p] *= scale;
        max_s = std::max(max_s, s[p]);
      }
      for (auto& v : s) sum += v = std::exp(v - max_s);
      for (int64_t p = 0; p < c.visible; ++p) {
        for (int i = 0; i < c.head_dim; ++i) expected[size_t(h) * c.head_dim + i] += s[p] / sum * values[p * stride + i];
      }
    }

    std::vector<float> first;
    for (SimdLevel level : test::runnable_levels()) {
      SCOPED_TRACE(std::string(simd_level_name(level)));
      std::vector<float> out(expected.size()), scores(size_t(c.group) * c.visible);
      AttendArgs a;
      a.q = q.data();
      a.group = c.group;
      a.head_dim = c.head_dim;
      a.keys = keys.data();
      a.values = values.data();
      a.stride = stride;
      a.visible = c.visible;
      a.scale = scale;
      a.out = out.data();
      a.scores = scores.data();
      attend_kernel(level)(a);
      for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 1e-5) << i;
      if (first.empty()) first = out;
      EXPECT_EQ(out, first) << "levels disagree";
    }
  }
}

}  // namespace
}  // namespace moe
