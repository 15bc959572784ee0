#include <gtest/gtest.h>

#include <map>

#include "engine/sampler.h"

namespace moe {
namespace {

TEST(Sampler, GreedyTakesTheLargestAndBreaksTiesByLowestId) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 2.9f}, {}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{5.0f, 1.0f, 5.0f}, {}), 0);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 1;
  Sampler s(p);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(std::vector<float>{0.0f, 0.5f, 0.4f}, {}), 1);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0;
  p.seed = 3;
  Sampler s(p);
  const std::vector<float> logits = {0.0f, std::log(3.0f)};  // probabilities 1/4 and 3/4
  int ones = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ones += s.sample(logits, {}) == 1;
  EXPECT_NEAR(double(ones) / n, 0.75, 0.02);
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 0.5f;
  p.min_p = 0;
  Sampler s(p);
  const std::vector<float> logits = {2.0f, 0.0f, 0.0f, 0.0f};  // p0 = 0.71 covers top-p 0.5 alone
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits, {}), 0);
  SamplingParams q;
  q.temperature = 1.0f;
  q.top_k = 0;
  q.top_p = 1.0f;
  q.min_p = 0.5f;  // keeps tokens with p >= 0.5 * p_max
  Sampler t(q);
  std::map<int, int> seen;
  for (int i = 0; i < 300; ++i) seen[t.sample(std::vector<float>{1.0f, 1.0f - 0.1f, -5.0f}, {})]++;
  EXPECT_EQ(seen.count(2), 0u);
  EXPECT_GT(seen[1], 0);
}

TEST(Sampler, RepetitionPenaltyAvoidsRecentTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  const std::vector<float> logits = {1.0f, 1.5f};
  EXPECT_EQ(s.sample(logits, std::vector<TokenId>{}), 1);
  EXPECT_EQ(s.sample(logits, std::vector<TokenId>{1}), 0);  // 1.5 / 2 < 1.0
  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 1.0f;
  Sampler t(q);
  EXPECT_EQ(t.sample(logits, std::vector<TokenId>{1, 1}), 0);  // 1.5 - 1 < 1.0
}

}  // namespace
}  // namespace moe
