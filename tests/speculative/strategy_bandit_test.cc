#include "speculative/strategy_bandit.h"

#include <gtest/gtest.h>

namespace tlt::speculative {
namespace {

std::vector<Strategy> Defaults() {
  std::vector<Strategy> out;
  for (const char* s : {"8_4_48", "6_4_48", "8_4_32", "8_4_16", "8_4_8"}) out.push_back(ParseStrategy(s).value());
  return out;
}

TEST(StrategyBanditTest, BucketsGetGroupsByDraftTokenCount) {
  StrategyBandit bandit(Defaults());
  EXPECT_EQ(bandit.ArmsFor(1), (std::vector<int64_t>{0, 1}));  // 48 tokens
  EXPECT_EQ(bandit.ArmsFor(2), (std::vector<int64_t>{2}));     // 32
  EXPECT_EQ(bandit.ArmsFor(4), (std::vector<int64_t>{2}));
  EXPECT_EQ(bandit.ArmsFor(5), (std::vector<int64_t>{3}));     // 16
  EXPECT_EQ(bandit.ArmsFor(20), (std::vector<int64_t>{3}));
  EXPECT_EQ(bandit.ArmsFor(21), (std::vector<int64_t>{4}));    // 8
  EXPECT_EQ(bandit.ArmsFor(500), (std::vector<int64_t>{4}));
  StrategyBandit one({ParseStrategy("4_1_4").value()});
  EXPECT_EQ(one.ArmsFor(64), (std::vector<int64_t>{0}));
}

TEST(StrategyBanditTest, UntriedFirstThenBestMedianWithEpsilonExploration) {
  std::vector<double> draws;
  size_t next = 0;
  auto uniform = [&] { return next < draws.size() ? draws[next++] : 0.99; };
  StrategyBandit bandit(Defaults(), {}, uniform);
  EXPECT_EQ(bandit.Select(1), 0);
  bandit.Update(1, 0, 2.0, 1.0);  // reward 2
  EXPECT_EQ(bandit.Select(1), 1);
  bandit.Update(1, 1, 3.0, 1.0);  // reward 3
  EXPECT_EQ(bandit.Select(1), 1);  // exploit: 3 > 2
  // Median, not mean: one huge outlier for arm 0 does not win.
  bandit.Update(1, 0, 100.0, 1.0);
  bandit.Update(1, 0, 1.0, 1.0);
  EXPECT_DOUBLE_EQ(bandit.MedianReward(1, 0), 2.0);
  EXPECT_EQ(bandit.Select(1), 1);
  // Exploration: a draw below epsilon, then the arm index draw.
  draws = {0.05, 0.1};
  next = 0;
  EXPECT_EQ(bandit.Select(1), 0);
  // State is per batch size: batch size 3 has its own untried arms.
  EXPECT_EQ(bandit.Select(3), 2);
  // Reward scales with batch size and inverse step time.
  bandit.Update(3, 2, 2.0, 0.5);
  EXPECT_DOUBLE_EQ(bandit.MedianReward(3, 2), 12.0);
}

// The plain arm (no speculation) joins every bucket after the strategies, is tried like them,
// and wins where its reward (1 token per request per second of step) is the best.
TEST(StrategyBanditTest, PlainArmServesEveryBucketAndWinsWhenFaster) {
  StrategyBanditOptions options;
  options.plain_arm = true;
  StrategyBandit bandit(Defaults(), options, [] { return 0.99; });  // never explores
  const int64_t plain = bandit.plain_arm_index();
  EXPECT_EQ(plain, static_cast<int64_t>(Defaults().size()));
  EXPECT_TRUE(bandit.is_plain(plain));
  EXPECT_FALSE(bandit.is_plain(0));
  for (int64_t bs : {1, 2, 5, 21, 500}) EXPECT_EQ(bandit.ArmsFor(bs).back(), plain);
  // Batch 16 (arms {3, plain}): SD gains 3 tokens a request in 0.2 s (reward 240), plain 1 token
  // in 0.05 s (reward 320): plain wins; then faster SD steps win it back.
  EXPECT_EQ(bandit.Select(16), 3);
  bandit.Update(16, 3, 3.0, 0.2);
  EXPECT_EQ(bandit.Select(16), plain);
  bandit.Update(16, plain, 1.0, 0.05);
  EXPECT_EQ(bandit.Select(16), plain);
  for (int i = 0; i < 3; ++i) bandit.Update(16, 3, 3.0, 0.1);  // reward 480
  EXPECT_EQ(bandit.Select(16), 3);
  StrategyBandit without(Defaults(), {}, [] { return 0.99; });
  EXPECT_FALSE(without.is_plain(without.plain_arm_index()));
  for (int64_t bs : {1, 500}) EXPECT_NE(without.ArmsFor(bs).back(), without.plain_arm_index());
}

TEST(StrategyBanditTest, WindowKeepsTheLastRewards) {
  StrategyBanditOptions options;
  options.window = 3;
  StrategyBandit bandit(Defaults(), options, [] { return 0.5; });
  for (double r : {1.0, 1.0, 1.0, 9.0, 9.0}) bandit.Update(1, 0, r, 1.0);
  EXPECT_DOUBLE_EQ(bandit.MedianReward(1, 0), 9.0);
}

TEST(SpeculationSwitchTest, OnAfterPatienceOffAboveThreshold) {
  SpeculationSwitch sw(32, 3);
  EXPECT_FALSE(sw.Observe(40));
  EXPECT_FALSE(sw.Observe(32));
  EXPECT_FALSE(sw.Observe(10));
  EXPECT_TRUE(sw.Observe(8));
  EXPECT_TRUE(sw.Observe(30));
  EXPECT_FALSE(sw.Observe(33));
  EXPECT_FALSE(sw.Observe(1));
}

}  // namespace
}  // namespace tlt::speculative
