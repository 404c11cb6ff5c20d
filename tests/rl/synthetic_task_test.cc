// The synthetic chain-sum task: determinism, verifiability, and the long tail of lengths.
#include "rl/synthetic_task.h"

#include <gtest/gtest.h>

#include "rl/metrics.h"
#include "rl/reward.h"

namespace tlt::rl {
namespace {

TEST(SyntheticTaskTest, SolutionsAreCorrectAndVerifiable) {
  EXPECT_EQ(SyntheticSolution({12, 7, 33, 5}, 0), "12+7=19;19+33=52;52+5=57;####57");
  EXPECT_EQ(SyntheticSolution({3, 4, 8}, 10), "3+4=7;7+8=5;####5");
  SyntheticTaskOptions o;
  auto vocab = SyntheticTaskVocab();
  ASSERT_TRUE(vocab.ok());
  for (const Example& e : SyntheticDataset(o, 5, 200)) {
    EXPECT_EQ(MathReward(e.fields.at("solution"), e), 1.0) << e.prompt;
    EXPECT_TRUE(vocab->Encode(e.prompt + e.fields.at("solution")).ok());
    int64_t sum = 0, terms = std::stoll(e.fields.at("terms"));
    size_t pos = 0;
    for (int64_t i = 0; i < terms; ++i) {
      size_t next;
      sum += std::stoll(e.prompt.substr(pos), &next);
      pos += next + 1;
    }
    EXPECT_EQ(std::to_string(sum), e.answer) << e.prompt;
    EXPECT_GE(terms, o.min_terms);
    EXPECT_LE(terms, o.max_terms);
  }
}

TEST(SyntheticTaskTest, DeterministicPerIndex) {
  SyntheticTaskOptions o;
  EXPECT_EQ(SyntheticExample(o, 1, 17).prompt, SyntheticDataset(o, 1, 20)[17].prompt);
  EXPECT_NE(SyntheticExample(o, 1, 17).prompt, SyntheticExample(o, 2, 17).prompt);
}

TEST(SyntheticTaskTest, SolutionLengthsAreLongTailed) {
  SyntheticTaskOptions o;  // defaults, as documented in docs/synthetic-task.md
  std::vector<double> lengths;
  for (const Example& e : SyntheticDataset(o, 0, 10000)) {
    lengths.push_back(double(e.fields.at("solution").size()) + 1);  // + <eos>
  }
  double p50 = Percentile(lengths, 50), p99 = Percentile(lengths, 99);
  std::printf("solution length: p50 %.0f p90 %.0f p99 %.0f max %.0f\n", p50,
              Percentile(lengths, 90), p99, Percentile(lengths, 100));
  EXPECT_GE(p99, 5 * p50);
}

}  // namespace
}  // namespace tlt::rl
