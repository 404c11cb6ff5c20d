// StrategyBandit: BEG-MAB, the bucketed epsilon-greedy bandit that picks a drafting strategy
// for each speculative step from the running batch size (TLT's adaptive rollout engine).
//
// Strategies are grouped by draft-token count; groups, sorted by token count descending, map to
// batch-size buckets in order (edges {1, 2, 5, 21}: bucket i holds batch sizes in
// [edges[i], edges[i+1]), the last one is open-ended), so small batches get more draft tokens.
// With fewer groups than buckets the last group serves the remaining buckets; with more, the
// extra groups (the fewest tokens) go to the last bucket. Within a bucket: an arm never tried at
// this batch size is picked first (in the order given); otherwise with probability epsilon a
// uniformly random arm of the bucket, else the arm with the highest median reward over its
// sliding window (the last `window` rewards at this batch size; ties: the earlier arm).
// Reward = accepted length * batch size / step time (draft + verify), recorded with Update().
// With plain_arm, every bucket also has the arm plain_arm_index() (= strategies().size()): a
// step without speculation, rewarded with 1 token per request over its time, so the bandit
// stops speculating at batch sizes where SD is slower than plain decoding.
//
// Randomness comes from an injected uniform [0, 1) source, so tests are deterministic. Plain C++
// (no LibTorch); not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "speculative/strategy.h"

namespace tlt::speculative {

struct StrategyBanditOptions {
  std::vector<int64_t> bucket_edges{1, 2, 5, 21};
  double epsilon = 0.1;
  int64_t window = 300;
  bool plain_arm = false;
};

class StrategyBandit {
 public:
  // `strategies` non-empty; `uniform` returns doubles in [0, 1) (default: seeded mt19937_64).
  StrategyBandit(std::vector<Strategy> strategies, StrategyBanditOptions options = {},
                 std::function<double()> uniform = nullptr);

  // Index into strategies() of the arm to use at this batch size (>= 1).
  int64_t Select(int64_t batch_size);
  // Records the outcome of a step that used arm `arm` at `batch_size`.
  void Update(int64_t batch_size, int64_t arm, double accepted_length, double step_seconds);

  const std::vector<Strategy>& strategies() const { return strategies_; }
  int64_t plain_arm_index() const { return static_cast<int64_t>(strategies_.size()); }
  bool is_plain(int64_t arm) const { return options_.plain_arm && arm == plain_arm_index(); }
  // Arms (indices) serving batch size `batch_size`.
  const std::vector<int64_t>& ArmsFor(int64_t batch_size) const;
  // Median of the arm's window at this batch size; 0 when empty.
  double MedianReward(int64_t batch_size, int64_t arm) const;

 private:
  int64_t BucketOf(int64_t batch_size) const;

  std::vector<Strategy> strategies_;
  StrategyBanditOptions options_;
  std::function<double()> uniform_;
  std::mt19937_64 rng_{0x7e57};
  std::vector<std::vector<int64_t>> bucket_arms_;
  std::map<int64_t, std::map<int64_t, std::deque<double>>> rewards_;  // batch size -> arm -> window
};

// SpeculationSwitch: turns speculative decoding on once the running batch has been at or below
// `threshold` for `patience` consecutive decode steps, and off as soon as it is above.
class SpeculationSwitch {
 public:
  explicit SpeculationSwitch(int64_t threshold = 32, int64_t patience = 10)
      : threshold_(threshold), patience_(patience) {}
  // Call once per decode step with the running batch size; returns whether SD is on for it.
  bool Observe(int64_t batch_size) {
    if (batch_size > threshold_) {
      small_steps_ = 0;
      on_ = false;
    } else if (!on_ && ++small_steps_ >= patience_) {
      on_ = true;
    }
    return on_;
  }
  bool on() const { return on_; }

 private:
  int64_t threshold_, patience_;
  int64_t small_steps_ = 0;
  bool on_ = false;
};

}  // namespace tlt::speculative
