// GrpoTrainer: one GRPO training step end to end, without actors: sample a group of responses
// per prompt with models::Engine, score them with a reward function, compute group-relative
// advantages, run Learner::GrpoStep, and write a metrics line.
//
// Rollouts use a separate engine model that receives the learner's weights (LoadWeights) before
// every step; sampling seeds are a pure function of (options.seed, step, prompt, sample), and
// prompts come from a seeded DataCursor, so a run is reproducible and a resumed run (see
// SaveCheckpoint / RestoreCheckpoint) continues exactly where it stopped.
//
// Dynamic sampling (drop_zero_advantage_groups, on by default): a group whose rewards are all
// equal has zero advantages and teaches nothing; it is dropped before the learner step, so it
// neither costs a forward/backward pass nor dilutes the token-mean loss (DAPO). The metric
// `groups_dropped` counts them; when every group is dropped there is no learner step at all
// (`skipped` = 1, weights and optimizer untouched).
//
// Checkpoints: SaveCheckpoint(dir) writes one; with options.checkpoint_root set,
// SaveStepCheckpoint() writes `<root>/step-<N>` and then keeps only the last
// options.keep_checkpoints (rl/checkpoint_store.h: never the one just written, never the latest
// valid one), and Step() does so by itself every options.checkpoint_every steps.
// RestoreLatestCheckpoint() resumes from the latest valid one under the root.
//
// Text goes through a TextCodec (encode, decode, stop token); CodecFromCharVocab() adapts the
// synthetic task's vocabulary. Not thread-safe; the learner must outlive the trainer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/engine.h"
#include "rl/char_vocab.h"
#include "rl/checkpoint.h"
#include "rl/dataset.h"
#include "rl/learner.h"
#include "rl/metrics.h"
#include "rl/reward.h"

namespace tlt::rl {

struct TextCodec {
  std::function<Result<std::vector<int64_t>>(const std::string&)> encode;
  std::function<Result<std::string>(const std::vector<int64_t>&)> decode;
  int64_t stop_token_id = -1;  // appended to SFT targets, stops generation, dropped when decoding
};
TextCodec CodecFromCharVocab(const CharVocab& vocab);  // the vocab must outlive the codec

// SFT samples: prompt = template(example), response = example.fields[response_field] (the
// example's answer when absent) followed by the stop token.
Result<std::vector<Sample>> MakeSftSamples(const std::vector<Example>& examples,
                                           const TextCodec& codec, const PromptTemplate& prompt,
                                           const std::string& response_field = "solution");

struct GrpoTrainerOptions {
  int64_t prompts_per_step = 8;
  int64_t group_size = 8;
  int64_t max_new_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  PromptTemplate prompt_template;
  AdvantageOptions advantage;
  double correct_reward = 1.0;  // accuracy counts responses with reward >= this
  models::EngineOptions engine;
  std::string metrics_path;                // empty: no file
  bool drop_zero_advantage_groups = true;  // see the header comment
  std::string checkpoint_root;   // where SaveStepCheckpoint writes step-<N>; empty: nowhere
  int64_t keep_checkpoints = 0;  // > 0: keep the last K under checkpoint_root; <= 0: keep all
  int64_t checkpoint_every = 0;  // > 0 (needs checkpoint_root): Step() checkpoints every N steps
};

struct Evaluation {
  double accuracy = 0;
  double reward_mean = 0;
  std::vector<double> lengths;  // generated tokens per response
};

class GrpoTrainer {
 public:
  static Result<std::unique_ptr<GrpoTrainer>> Create(Learner* learner, std::vector<Example> data,
                                                     TextCodec codec, RewardFunction reward,
                                                     const GrpoTrainerOptions& options);
  // Metrics: step, reward_mean, accuracy, response_length_{mean,p50,p90,p99,max},
  // groups_dropped, rollout_logprob_gap (mean |learner - engine| log-prob of the kept response
  // tokens; meaningful at top_k 0, top_p 1, temperature 1), the learner's metrics, time_rollout_s,
  // time_update_s, time_step_s (and time_checkpoint_s on checkpointing steps).
  Result<MetricsRecord> Step();
  // Samples `samples` responses per example with the current policy (seeded; no training).
  Result<Evaluation> Evaluate(const std::vector<Example>& examples, int64_t samples,
                              double temperature, uint64_t seed);
  Status SaveCheckpoint(const std::string& dir);
  Status RestoreCheckpoint(const std::string& dir);
  // <checkpoint_root>/step-<step()> then pruning (see the header comment); returns the path.
  Result<std::string> SaveStepCheckpoint();
  // Restores the latest valid checkpoint under checkpoint_root (kNotFound: none); its path.
  Result<std::string> RestoreLatestCheckpoint();
  int64_t step() const { return step_; }

 private:
  GrpoTrainer(Learner* learner, std::vector<Example> data, TextCodec codec, RewardFunction reward,
              const GrpoTrainerOptions& options);
  struct Rollout {
    std::vector<Sample> samples;
    std::vector<double> rewards;
    std::vector<std::vector<float>> logprobs;  // the engine's, per response token
  };
  Result<Rollout> Generate(const std::vector<const Example*>& examples, int64_t samples,
                           double temperature, uint64_t seed);

  Learner* learner_;
  std::vector<Example> data_;
  TextCodec codec_;
  RewardFunction reward_;
  GrpoTrainerOptions options_;
  DataCursor cursor_;
  std::unique_ptr<models::Engine> engine_;
  std::unique_ptr<MetricsWriter> metrics_;
  int64_t step_ = 0;
};

}  // namespace tlt::rl
