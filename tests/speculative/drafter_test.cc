#include "speculative/drafter.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>

#include "speculative/drafter_trainer.h"
#include "tests/models/test_models.h"

namespace tlt::speculative {
namespace {

namespace fs = std::filesystem;

models::Transformer TinyTarget(uint64_t seed, bool tied = false) {
  torch::manual_seed(seed);
  models::Transformer t(models::testing::TinyConfig("llama", 4, 2, tied));
  t->eval();
  return t;
}

std::string TempDir(const std::string& name) {
  return (fs::temp_directory_path() / ("tlt-spec-" + name + "-" + std::to_string(::getpid())))
      .string();
}

// Removes a drafter checkpoint directory file by file: std::filesystem::remove_all of a
// non-empty directory crashes (null call inside libstdc++) on the GPU machine's toolchain.
void RemoveCheckpoint(const std::string& dir) {
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors"}) {
    ::unlink((dir + "/" + f).c_str());
  }
  ::rmdir(dir.c_str());
}

TEST(DrafterTest, InitIsSeededAndSavesOnlyTrainableWeights) {
  models::Transformer target = TinyTarget(1);
  Drafter a = InitDrafter(target, 7), b = InitDrafter(target, 7), c = InitDrafter(target, 8);
  auto ta = a->NamedTensors(), tb = b->NamedTensors(), tc = c->NamedTensors();
  ASSERT_EQ(ta.count("fc.weight"), 1u);
  ASSERT_EQ(ta.count("fc.bias"), 1u);
  ASSERT_EQ(ta.count("layers.0.self_attn.q_proj.weight"), 1u);
  for (const auto& [name, t] : ta) {
    EXPECT_EQ(name.find("embed"), std::string::npos) << name;
    EXPECT_EQ(name.find("lm_head"), std::string::npos) << name;
    EXPECT_TRUE(torch::equal(t, tb.at(name))) << name;
  }
  EXPECT_FALSE(torch::equal(ta.at("fc.weight"), tc.at("fc.weight")));

  const std::string dir = TempDir("drafter");
  ASSERT_TRUE(SaveDrafter(a, dir).ok());
  auto loaded = LoadDrafter(dir, target);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  for (const auto& [name, t] : (*loaded)->NamedTensors()) EXPECT_TRUE(torch::equal(t, ta.at(name)));
  auto file = models::SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file.value()->names().size(), ta.size());

  // A target of another shape is refused with the field named.
  models::ModelConfig other = models::testing::TinyConfig("llama", 4, 2, false, 10000.0, 99);
  torch::manual_seed(2);
  models::Transformer wrong(other);
  auto refused = LoadDrafter(dir, wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("vocab_size"), std::string::npos)
      << refused.status().ToString();
  RemoveCheckpoint(dir);
}

// The loss against a float64 reference written from the formula.
TEST(DrafterTrainerTest, LossMatchesFloat64Reference) {
  torch::manual_seed(5);
  const int64_t N = 7, H = 12, V = 17;
  torch::Tensor pred = torch::randn({N, H}) * 1.5, target = torch::randn({N, H}), head = torch::randn({V, H}) * 0.5;
  DrafterLossTerms got = DrafterLoss(pred, target, head);
  torch::Tensor p = pred.to(torch::kFloat64), t = target.to(torch::kFloat64), w = head.to(torch::kFloat64);
  double smooth = 0, ce = 0;
  for (int64_t i = 0; i < N; ++i) {
    double row = 0;
    for (int64_t j = 0; j < H; ++j) {
      double d = std::abs(p[i][j].item<double>() - t[i][j].item<double>());
      row += d < 1 ? 0.5 * d * d : d - 0.5;
    }
    smooth += row / H;
    torch::Tensor lt = torch::mv(w, t[i]), lp = torch::mv(w, p[i]);
    torch::Tensor q = lt.exp() / lt.exp().sum();
    torch::Tensor logp = lp - lp.exp().sum().log();
    ce += -(q * logp).sum().item<double>();
  }
  smooth /= N;
  ce /= N;
  EXPECT_NEAR(got.hidden_loss.item<double>(), smooth, 1e-5);
  EXPECT_NEAR(got.logit_loss.item<double>(), ce, 1e-5);
  EXPECT_NEAR(got.total.item<double>(), smooth + 0.1 * ce, 1e-5);
}

std::vector<DrafterSample> RandomSamples(int count, int64_t length, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<DrafterSample> out;
  for (int i = 0; i < count; ++i) {
    torch::Tensor t = torch::randint(2, 61, {length}, torch::kInt64);
    DrafterSample s;
    s.tokens.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + length);
    s.prompt_length = 3;
    out.push_back(s);
  }
  return out;
}

// Packing several sequences into one row changes nothing: each attends only to itself.
TEST(DrafterTrainerTest, PackingIsolatesSequences) {
  models::Transformer target = TinyTarget(3);
  DrafterTrainer trainer(target, InitDrafter(target, 4), DrafterTrainerOptions());
  auto samples = RandomSamples(3, 9, 6);
  auto all = trainer.Evaluate(samples);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  double weighted = 0;
  int64_t tokens = 0;
  for (const auto& s : samples) {
    auto one = trainer.Evaluate({s});
    ASSERT_TRUE(one.ok());
    weighted += one->loss * one->tokens;
    tokens += one->tokens;
  }
  EXPECT_EQ(all->tokens, tokens);
  EXPECT_EQ(all->tokens, 3 * 6);  // pairs t = 2 .. 7 of each sample
  EXPECT_NEAR(all->loss, weighted / tokens, 1e-5);
  // Windows cut long sequences: a window of 4 pairs gives different (shorter-context) results.
  trainer.options().window = 4;
  auto cut = trainer.Evaluate(samples);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->tokens, tokens);
  EXPECT_FALSE(trainer.Evaluate({DrafterSample{{5}, {}, 1}}).ok());
}

TEST(DrafterTrainerTest, StepsLowerTheLossAndCheckpointResumesExactly) {
  models::Transformer target = TinyTarget(3);
  DrafterTrainerOptions options = DrafterTrainerOptions::OfflineDefaults();
  options.learning_rate = 3e-3;
  DrafterTrainer trainer(target, InitDrafter(target, 4), options);
  auto samples = RandomSamples(4, 16, 8);
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    auto stats = trainer.TrainStep(samples);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    if (i == 0) first = stats->loss;
    last = stats->loss;
    EXPECT_EQ(stats->step, i + 1);
  }
  EXPECT_LT(last, 0.8 * first);
  const std::string dir = TempDir("trainer");
  ASSERT_TRUE(trainer.SaveCheckpoint(dir).ok());
  DrafterTrainer resumed(target, InitDrafter(target, 99), options);
  ASSERT_TRUE(resumed.LoadCheckpoint(dir).ok());
  EXPECT_EQ(resumed.step(), 30);
  auto a = trainer.TrainStep(samples), b = resumed.TrainStep(samples);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NEAR(a->loss, b->loss, 1e-7);
  auto ta = trainer.drafter()->NamedTensors(), tb = resumed.drafter()->NamedTensors();
  for (const auto& [name, t] : ta) EXPECT_TRUE(torch::allclose(t, tb.at(name), 0, 1e-7)) << name;
  RemoveCheckpoint(dir);
}

}  // namespace
}  // namespace tlt::speculative
