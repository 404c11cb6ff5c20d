// GrpoTrainer end to end on the synthetic task: checkpoints (exact resume, corruption,
// mismatch, retention), equal rewards, dropped zero-advantage groups.
#include "rl/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "rl/checkpoint_store.h"
#include "rl/synthetic_task.h"
#include "rl_test_util.h"
#include "runtime/file_util.h"

namespace tlt::rl {
namespace {

namespace fs = std::filesystem;
using testing::FlatWeights;
using testing::TinyConfig;
using testing::TinyModel;

SyntheticTaskOptions SmallTask() {
  SyntheticTaskOptions t;
  t.modulus = 10;
  t.min_terms = 2;
  t.max_terms = 4;
  return t;
}

struct Setup {
  CharVocab vocab = *SyntheticTaskVocab();
  std::unique_ptr<Learner> learner;
  std::unique_ptr<GrpoTrainer> trainer;
};

std::unique_ptr<Setup> MakeSetup(uint64_t model_seed, RewardFunction reward, int64_t hidden = 32,
                                 double lr = 1e-3, GrpoTrainerOptions o = GrpoTrainerOptions()) {
  auto s = std::make_unique<Setup>();
  LearnerOptions lo;
  lo.optimizer.lr = lr;
  lo.micro_batch_size = 16;
  lo.mini_batches = 2;
  lo.ppo_epochs = 2;  // resume, equal rewards and retention hold with several passes too
  s->learner = std::make_unique<Learner>(
      TinyModel(TinyConfig(s->vocab.vocab_size(), hidden), model_seed), lo);
  o.prompts_per_step = 8;
  o.group_size = 8;
  o.max_new_tokens = 32;
  o.seed = 11;
  o.engine.max_batch_size = 64;
  o.engine.max_sequence_length = 64;
  auto t = GrpoTrainer::Create(s->learner.get(), SyntheticDataset(SmallTask(), 1, 500),
                               CodecFromCharVocab(s->vocab), reward, o);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  s->trainer = std::move(*t);
  return s;
}

// Partial credit so that a random model gets non-constant rewards.
double ShapedReward(const std::string& response, const Example& e) {
  return MathReward(response, e) + 0.1 * FormatReward(response, e) +
         0.01 * std::min<size_t>(response.size(), 10);
}

bool SameExceptTimes(const MetricsRecord& a, const MetricsRecord& b, std::string* diff) {
  for (const auto& [k, v] : a) {
    if (k.rfind("time_", 0) == 0) continue;
    if (!b.count(k) || b.at(k) != v) {
      *diff = k + ": " + std::to_string(v) + " vs " + (b.count(k) ? std::to_string(b.at(k)) : "-");
      return false;
    }
  }
  return a.size() == b.size();
}

TEST(TrainerTest, ResumeFromCheckpointContinuesExactly) {
  fs::path dir = fs::path(::testing::TempDir()) / "rl_resume_test";
  (void)::tlt::RemoveTree(std::string(dir));
  fs::create_directories(dir);
  auto a = MakeSetup(21, ShapedReward);
  ASSERT_TRUE(a->trainer->Step().ok());
  ASSERT_TRUE(a->trainer->Step().ok());
  ASSERT_TRUE(a->trainer->SaveCheckpoint((dir / "step-2").string()).ok());
  EXPECT_FALSE(fs::exists(dir / ("step-2.tmp-" + std::to_string(::getpid()))));
  auto want = a->trainer->Step();
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(want->at("skipped"), 0.0);

  auto b = MakeSetup(99, ShapedReward);  // different initial weights: all must come from disk
  Status st = b->trainer->RestoreCheckpoint((dir / "step-2").string());
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(b->trainer->step(), 2);
  auto got = b->trainer->Step();
  ASSERT_TRUE(got.ok());
  std::string diff;
  EXPECT_TRUE(SameExceptTimes(*want, *got, &diff)) << diff;
  EXPECT_TRUE(torch::equal(FlatWeights(a->learner->policy()), FlatWeights(b->learner->policy())));
  // An existing checkpoint is never overwritten.
  EXPECT_FALSE(a->trainer->SaveCheckpoint((dir / "step-2").string()).ok());
}

TEST(TrainerTest, CorruptIncompleteAndMismatchedCheckpointsAreRefused) {
  fs::path dir = fs::path(::testing::TempDir()) / "rl_corrupt_test";
  (void)::tlt::RemoveTree(std::string(dir));
  fs::create_directories(dir);
  auto a = MakeSetup(21, ShapedReward);
  ASSERT_TRUE(a->trainer->SaveCheckpoint((dir / "good").string()).ok());
  fs::copy(dir / "good", dir / "corrupt", fs::copy_options::recursive);
  {
    std::fstream f(dir / "corrupt/policy/model.safetensors",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  Status st = a->trainer->RestoreCheckpoint((dir / "corrupt").string());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("model.safetensors does not match its checksum"), std::string::npos)
      << st.message();
  fs::copy(dir / "good", dir / "incomplete", fs::copy_options::recursive);
  fs::remove(dir / "incomplete/MANIFEST.json");  // as if the writer died before the manifest
  st = a->trainer->RestoreCheckpoint((dir / "incomplete").string());
  EXPECT_NE(st.message().find("no MANIFEST.json"), std::string::npos) << st.message();
  auto wide = MakeSetup(21, ShapedReward, /*hidden=*/48);
  st = wide->trainer->RestoreCheckpoint((dir / "good").string());
  EXPECT_NE(st.message().find("does not match the learner's model"), std::string::npos)
      << st.message();
  EXPECT_TRUE(a->trainer->RestoreCheckpoint((dir / "good").string()).ok());
}

TEST(TrainerTest, EqualRewardsLeaveWeightsUnchanged) {
  auto s = MakeSetup(5, [](const std::string&, const Example&) { return 1.0; });
  torch::Tensor before = FlatWeights(s->learner->policy());
  for (int i = 0; i < 3; ++i) {
    auto m = s->trainer->Step();
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->at("reward_mean"), 1.0);
    EXPECT_EQ(m->at("skipped"), 1.0);
  }
  EXPECT_TRUE(torch::equal(before, FlatWeights(s->learner->policy())));
}

// GRPO on a reward a random policy sometimes earns (the response starts with '7', about 1 in
// 16 at first) must make it the rule within 15 steps (seen: 0.08 -> 0.85, the mean of the last
// 3 steps); the learner's log-probs agree with those of the engine that sampled the tokens.
TEST(TrainerTest, GrpoRaisesASimpleReward) {
  auto s = MakeSetup(
      4,
      [](const std::string& response, const Example&) {
        return !response.empty() && response[0] == '7' ? 1.0 : 0.0;
      },
      32, 1e-2);
  double first = 0, last3 = 0;
  for (int step = 0; step < 15; ++step) {
    auto m = s->trainer->Step();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    if (step == 0) first = m->at("reward_mean");
    if (step >= 12) last3 += m->at("reward_mean") / 3;
    if (m->at("skipped") == 0) {
      ASSERT_TRUE(m->count("rollout_logprob_gap"));
      EXPECT_LT(m->at("rollout_logprob_gap"), 1e-4);  // 0 on CPU (the same float32 kernels)
    }
    std::printf("step %d: reward %.3f\n", step, m->at("reward_mean"));
  }
  EXPECT_LT(first, 0.3);
  EXPECT_GT(last3, 0.7);
}

// Groups whose rewards are all equal are dropped before the learner step and counted. Here the
// reward is constant for problems with an even answer and different for every response
// otherwise, so the expected count per step is the number of even-answer prompts drawn.
TEST(TrainerTest, ZeroAdvantageGroupsAreDroppedAndCounted) {
  std::set<std::string> drawn;  // the prompts of the current step, seen through the reward
  double counter = 0;
  RewardFunction reward = [&](const std::string&, const Example& e) {
    drawn.insert(e.source);
    return (e.answer.back() - '0') % 2 == 0 ? 1.0 : (counter += 1);
  };
  GrpoTrainerOptions keep_all;
  keep_all.drop_zero_advantage_groups = false;
  auto dropping = MakeSetup(8, reward);
  auto keeping = MakeSetup(8, reward, 32, 1e-3, keep_all);
  int64_t total_dropped = 0;
  for (int step = 0; step < 3; ++step) {
    drawn.clear();
    auto m = dropping->trainer->Step();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    int64_t even = 0;
    for (const std::string& source : drawn) {
      const int64_t index = std::stoll(source.substr(source.rfind(':') + 1));
      const Example e = SyntheticExample(SmallTask(), 1, index);
      even += (e.answer.back() - '0') % 2 == 0;
    }
    ASSERT_EQ(drawn.size(), 8u);
    EXPECT_EQ(m->at("groups_dropped"), double(even)) << "step " << step;
    total_dropped += even;
    auto k = keeping->trainer->Step();  // the same rollouts (same seeds, same weights at step 0)
    ASSERT_TRUE(k.ok());
    EXPECT_EQ(k->at("groups_dropped"), 0.0);
    if (step == 0 && even > 0 && even < 8) {
      EXPECT_LT(m->at("tokens"), k->at("tokens"));  // fewer sequences in the learner step
    }
  }
  EXPECT_GT(total_dropped, 0);
  // The dropped groups carried no gradient, but they did count in the token-mean normalizer:
  // the updates differ.
  EXPECT_FALSE(torch::equal(FlatWeights(dropping->learner->policy()),
                            FlatWeights(keeping->learner->policy())));
}

// checkpoint_every with keep_checkpoints: only the last K step-<N> directories remain, and a
// fresh trainer resumes from the latest one.
TEST(TrainerTest, StepCheckpointsKeepTheLastAndResumeFromTheLatest) {
  fs::path dir = fs::path(::testing::TempDir()) / "rl_retention_test";
  (void)::tlt::RemoveTree(std::string(dir));
  GrpoTrainerOptions o;
  o.checkpoint_root = dir.string();
  o.keep_checkpoints = 2;
  o.checkpoint_every = 1;
  auto a = MakeSetup(21, ShapedReward, 32, 1e-3, o);
  for (int i = 0; i < 4; ++i) {
    auto m = a->trainer->Step();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_TRUE(m->count("time_checkpoint_s"));
  }
  auto listed = ListCheckpoints(dir.string());
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].step, 3);
  EXPECT_EQ((*listed)[1].step, 4);
  auto b = MakeSetup(99, ShapedReward, 32, 1e-3, o);
  auto restored = b->trainer->RestoreLatestCheckpoint();
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(*restored, (dir / CheckpointName(4)).string());
  EXPECT_EQ(b->trainer->step(), 4);
  EXPECT_TRUE(torch::equal(FlatWeights(a->learner->policy()), FlatWeights(b->learner->policy())));
}

}  // namespace
}  // namespace tlt::rl
