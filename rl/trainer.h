// GrpoTrainer: one GRPO training step end to end, without actors: sample a group of responses
// per prompt with models::Engine, score them with a reward function, compute group-relative
// advantages, run Learner::GrpoStep, and write a metrics line.
//
// Rollouts use a separate engine model that receives the learner's weights (LoadWeights) before
// every step; sampling seeds are a pure function of (options.seed, step, prompt, sample), and
// prompts come from a seeded DataCursor, so a run is reproducible and a resumed run (see
// SaveCheckpoint / RestoreCheckpoint) continues exactly where it stopped.
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
  std::string metrics_path;     // empty: no file
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
  // Metrics: step, reward_mean, accuracy, response_length_{mean,p50,p90,p99,max}, the
  // learner's metrics, time_rollout_s, time_update_s, time_step_s.
  Result<MetricsRecord> Step();
  // Samples `samples` responses per example with the current policy (seeded; no training).
  Result<Evaluation> Evaluate(const std::vector<Example>& examples, int64_t samples,
                              double temperature, uint64_t seed);
  Status SaveCheckpoint(const std::string& dir);
  Status RestoreCheckpoint(const std::string& dir);
  int64_t step() const { return step_; }

 private:
  GrpoTrainer(Learner* learner, std::vector<Example> data, TextCodec codec, RewardFunction reward,
              const GrpoTrainerOptions& options);
  struct Rollout {
    std::vector<Sample> samples;
    std::vector<double> rewards;
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
