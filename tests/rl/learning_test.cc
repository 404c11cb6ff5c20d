// Learning, on CPU, seeded: SFT on worked solutions brings a tiny model part of the way on the
// synthetic chain-sum task (modulus 10, 2 to 4 operands); GRPO on the 0/1 answer reward then
// raises its accuracy on a fixed held-out set of problems that are not in the training data.
//
// SFT stops at a validation criterion, not a fixed step count: the model learns this task in a
// sharp transition (validation sampled accuracy ~0.1 for 300 steps, then 0.2 -> 0.64 within 25
// steps here) whose step can move with floating-point details (another CPU, another LibTorch),
// so a fixed count could land before it on one machine and after it on another. It stops at the
// first check (every 5 steps from step 150) where the sampled accuracy on a validation set (its
// own problems, neither trained on nor held out) reaches 0.5: past the transition, before SFT
// sharpens the policy.
//
// Measured on the 2-core development machine (shared), see the printed line (model seed 3,
// GRPO lr 3e-4): SFT stops at step 325 (validation 0.64); held-out sampled accuracy (T = 1, 4
// samples per problem) 0.627 -> 0.906 after 40 GRPO steps, greedy 0.895 -> 0.980; 171 s in all
// (SFT 96 s). The test asserts sampled +0.10 and that greedy accuracy does not fall by more
// than 0.05.
// Not robust to every initialization (tuning runs with TLT_RL_MODEL_SEED, 1 thread): seed 4
// stops at step 240 and gains less (0.499 -> 0.621 sampled, greedy 0.770 -> 0.795; with GRPO
// lr 5e-4: 0.600 and 0.715; lr 1e-3: 0.200 and 0.230, a collapse); seed 5 reaches the
// transition only at SFT step 920 (0.479 -> 0.604 sampled, greedy 0.660 -> 0.805; 427 s, 2
// threads). The test fails if SFT has not reached the target by step 1000.
// TLT_RL_<FIELD> environment variables override the settings, for tuning runs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <type_traits>

#include "rl/synthetic_task.h"
#include "rl/trainer.h"
#include "rl_test_util.h"

namespace tlt::rl {
namespace {

using testing::TinyConfig;
using testing::TinyModel;

struct LearningSetup {
  int64_t hidden = 64, layers = 2, model_seed = 3;
  int64_t train_size = 2000, held_out_size = 200, validation_size = 100;
  int64_t sft_max_steps = 1000, sft_batch = 64, sft_min_steps = 150, sft_check_every = 5;
  double sft_lr = 3e-3, sft_target = 0.5;
  int64_t grpo_steps = 40, prompts_per_step = 32, group_size = 8, ppo_epochs = 2, warmup = 5;
  double grpo_lr = 3e-4;
  int64_t grpo_eval_every = 0;  // > 0: print held-out greedy accuracy during GRPO

  static LearningSetup FromEnvironment() {
    LearningSetup s;
    auto get = [](const char* name, auto* value) {
      if (const char* v = std::getenv(name))
        *value = static_cast<std::decay_t<decltype(*value)>>(std::atof(v));
    };
    get("TLT_RL_HIDDEN", &s.hidden);
    get("TLT_RL_MODEL_SEED", &s.model_seed);
    get("TLT_RL_TRAIN_SIZE", &s.train_size);
    get("TLT_RL_SFT_MAX_STEPS", &s.sft_max_steps);
    get("TLT_RL_SFT_LR", &s.sft_lr);
    get("TLT_RL_SFT_TARGET", &s.sft_target);
    get("TLT_RL_GRPO_STEPS", &s.grpo_steps);
    get("TLT_RL_PROMPTS", &s.prompts_per_step);
    get("TLT_RL_GROUP", &s.group_size);
    get("TLT_RL_EPOCHS", &s.ppo_epochs);
    get("TLT_RL_GRPO_LR", &s.grpo_lr);
    get("TLT_RL_GRPO_EVAL_EVERY", &s.grpo_eval_every);
    return s;
  }
};

// `count` problems of stream `seed` whose prompts are not in `exclude`.
std::vector<Example> ProblemsOutside(const SyntheticTaskOptions& task, uint64_t seed, int64_t count,
                                     const std::set<std::string>& exclude) {
  std::vector<Example> out;
  for (int64_t i = 0; i < 100 * count && int64_t(out.size()) < count; ++i) {
    Example e = SyntheticExample(task, seed, i);
    if (!exclude.count(e.prompt)) out.push_back(std::move(e));
  }
  return out;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

TEST(LearningTest, SftThenGrpoRaisesAccuracy) {
  const auto start = std::chrono::steady_clock::now();
  const LearningSetup ls = LearningSetup::FromEnvironment();
  SyntheticTaskOptions task;
  task.modulus = 10;
  task.min_terms = 2;
  task.max_terms = 4;
  const std::vector<Example> train = SyntheticDataset(task, 1, ls.train_size);
  std::set<std::string> seen;
  for (const Example& e : train) seen.insert(e.prompt);
  const std::vector<Example> held_out = ProblemsOutside(task, 77, ls.held_out_size, seen);
  ASSERT_EQ(int64_t(held_out.size()), ls.held_out_size)
      << "too few problems outside the training set";
  for (const Example& e : held_out) seen.insert(e.prompt);
  const std::vector<Example> validation = ProblemsOutside(task, 78, ls.validation_size, seen);
  ASSERT_EQ(int64_t(validation.size()), ls.validation_size);

  CharVocab vocab = *SyntheticTaskVocab();
  LearnerOptions lo;
  lo.optimizer.lr = ls.grpo_lr;
  lo.optimizer.warmup_steps = ls.warmup;
  lo.micro_batch_size = 64;
  lo.ppo_epochs = ls.ppo_epochs;
  Learner learner(TinyModel(TinyConfig(vocab.vocab_size(), ls.hidden, ls.layers), ls.model_seed),
                  lo);
  GrpoTrainerOptions o;
  o.prompts_per_step = ls.prompts_per_step;
  o.group_size = ls.group_size;
  o.max_new_tokens = 40;
  o.seed = 11;
  o.engine.max_batch_size = 128;
  o.engine.max_sequence_length = 64;
  auto trainer = GrpoTrainer::Create(&learner, train, CodecFromCharVocab(vocab), MathReward, o);
  ASSERT_TRUE(trainer.ok()) << trainer.status().ToString();
  auto accuracy = [&](const std::vector<Example>& problems, int64_t samples, double temperature,
                      uint64_t seed) {
    auto ev = (*trainer)->Evaluate(problems, samples, temperature, seed);
    EXPECT_TRUE(ev.ok()) << ev.status().ToString();
    return ev.ok() ? ev->accuracy : -1.0;
  };

  // SFT (its own optimizer, the same policy module) until the validation criterion.
  LearnerOptions sft_options;
  sft_options.optimizer.lr = ls.sft_lr;
  sft_options.micro_batch_size = 64;
  Learner sft_learner(learner.policy(), sft_options);
  auto sft = MakeSftSamples(train, CodecFromCharVocab(vocab), PromptTemplate());
  ASSERT_TRUE(sft.ok());
  DataCursor cursor(static_cast<int64_t>(sft->size()), 5);
  int64_t sft_steps = 0;
  for (;; ++sft_steps) {
    if (sft_steps >= ls.sft_min_steps && sft_steps % ls.sft_check_every == 0) {
      const double v = accuracy(validation, 2, 1.0, 321 + sft_steps);
      std::printf("sft step %ld: validation sampled accuracy %.3f (%.0f s)\n", long(sft_steps), v,
                  Seconds(start));
      if (v >= ls.sft_target) break;
    }
    ASSERT_LT(sft_steps, ls.sft_max_steps) << "SFT did not reach the validation target";
    std::vector<Sample> batch;
    for (int64_t i : cursor.Next(ls.sft_batch)) batch.push_back((*sft)[i]);
    ASSERT_TRUE(sft_learner.SftStep(batch).ok());
  }
  const double greedy_before = accuracy(held_out, 1, 0.0, 0);
  const double sampled_before = accuracy(held_out, 4, 1.0, 123);
  const double sft_seconds = Seconds(start);

  for (int64_t step = 0; step < ls.grpo_steps; ++step) {
    auto m = (*trainer)->Step();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    auto get = [&](const char* k) { return m->count(k) ? m->at(k) : 0.0; };
    std::printf(
        "grpo step %ld: train accuracy %.3f, groups dropped %.0f, clip %.3f (last epoch "
        "%.3f), entropy %.3f, %.1f s\n",
        long(step), get("accuracy"), get("groups_dropped"), get("clip_fraction"),
        get("clip_fraction_last_epoch"), get("entropy"), get("time_step_s"));
    if (ls.grpo_eval_every > 0 && (step + 1) % ls.grpo_eval_every == 0) {
      std::printf("grpo step %ld: held-out greedy accuracy %.3f\n", long(step + 1),
                  accuracy(held_out, 1, 0.0, 0));
    }
  }
  const double greedy_after = accuracy(held_out, 1, 0.0, 0);
  const double sampled_after = accuracy(held_out, 4, 1.0, 123);
  std::printf(
      "held-out accuracy after SFT (%ld steps) -> after GRPO (%ld steps): sampled (T=1, 4 "
      "per problem) %.3f -> %.3f, greedy %.3f -> %.3f; %.0f s (SFT %.0f s)\n",
      long(sft_steps), long(ls.grpo_steps), sampled_before, sampled_after, greedy_before,
      greedy_after, Seconds(start), sft_seconds);
  EXPECT_GE(sampled_after, sampled_before + 0.10);
  EXPECT_GE(greedy_after, greedy_before - 0.05);
}

}  // namespace
}  // namespace tlt::rl
