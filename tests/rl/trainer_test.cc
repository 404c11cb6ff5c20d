// GrpoTrainer end to end on the synthetic task: checkpoints (exact resume, corruption,
// mismatch), equal rewards, and a learning test (SFT, then GRPO raises accuracy).
#include "runtime/file_util.h"
#include "rl/trainer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "rl/synthetic_task.h"
#include "rl_test_util.h"

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
                                 double lr = 1e-3) {
  auto s = std::make_unique<Setup>();
  LearnerOptions lo;
  lo.optimizer.lr = lr;
  lo.micro_batch_size = 16;
  lo.mini_batches = 2;
  s->learner = std::make_unique<Learner>(TinyModel(TinyConfig(s->vocab.vocab_size(), hidden), model_seed), lo);
  GrpoTrainerOptions o;
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
    std::fstream f(dir / "corrupt/policy/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
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

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}

// SFT on worked solutions brings the model part of the way; GRPO on the answer reward then
// should raise sampled (temperature 1) accuracy on held-out problems by a clear margin.
// DISABLED: not yet tuned. Measured (CPU, ~4 min): after 300 SFT steps 0.137, after 30 GRPO
// steps (lr 3e-4) 0.152, short of the +0.10 asserted here; with GRPO lr 2e-3 the policy
// collapsed to max-length responses. Run with --gtest_also_run_disabled_tests; the
// TLT_RL_SFT_STEPS, TLT_RL_GRPO_STEPS and TLT_RL_GRPO_LR_E5 variables override the settings.
TEST(LearningTest, DISABLED_SftThenGrpoRaisesAccuracy) {
  const int64_t sft_steps = EnvInt("TLT_RL_SFT_STEPS", 300);
  const int64_t grpo_steps = EnvInt("TLT_RL_GRPO_STEPS", 30);
  const double grpo_lr = EnvInt("TLT_RL_GRPO_LR_E5", 30) * 1e-5;
  auto s = MakeSetup(3, MathReward, /*hidden=*/64, grpo_lr);
  LearnerOptions sft_options;  // SFT with its own optimizer on the same policy module
  sft_options.optimizer.lr = 3e-3;
  sft_options.micro_batch_size = 32;
  Learner sft_learner(s->learner->policy(), sft_options);
  std::vector<Example> train = SyntheticDataset(SmallTask(), 1, 500);
  std::vector<Example> held_out = SyntheticDataset(SmallTask(), 77, 64);
  auto sft = MakeSftSamples(train, CodecFromCharVocab(s->vocab), PromptTemplate());
  ASSERT_TRUE(sft.ok());
  DataCursor cursor(static_cast<int64_t>(sft->size()), 5);
  for (int64_t step = 0; step < sft_steps; ++step) {
    std::vector<Sample> batch;
    for (int64_t i : cursor.Next(32)) batch.push_back((*sft)[i]);
    ASSERT_TRUE(sft_learner.SftStep(batch).ok());
  }
  auto before = s->trainer->Evaluate(held_out, 4, 1.0, 123);
  ASSERT_TRUE(before.ok());
  std::string path = ::testing::TempDir() + "/rl_learning_metrics.jsonl";
  std::remove(path.c_str());
  for (int64_t step = 0; step < grpo_steps; ++step) {
    auto m = s->trainer->Step();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    if (step % 10 == 0) {
      std::printf("grpo step %ld: reward %.3f len p50 %.0f grad_norm %.3f\n", long(step),
                  m->at("reward_mean"), m->at("response_length_p50"),
                  m->count("grad_norm") ? m->at("grad_norm") : 0.0);
    }
  }
  auto after = s->trainer->Evaluate(held_out, 4, 1.0, 123);
  ASSERT_TRUE(after.ok());
  std::printf("held-out sampled accuracy: after SFT (%ld steps) %.3f, after GRPO (%ld steps) %.3f\n",
              long(sft_steps), before->accuracy, long(grpo_steps), after->accuracy);
  EXPECT_GE(after->accuracy, before->accuracy + 0.10);
}

}  // namespace
}  // namespace tlt::rl
