#include "speculative/strategy_bandit.h"

#include <algorithm>

namespace tlt::speculative {

StrategyBandit::StrategyBandit(std::vector<Strategy> strategies, StrategyBanditOptions options,
                               std::function<double()> uniform)
    : strategies_(std::move(strategies)), options_(std::move(options)), uniform_(std::move(uniform)) {
  if (!uniform_) {
    uniform_ = [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); };
  }
  std::vector<int64_t> counts;
  for (const Strategy& s : strategies_) counts.push_back(s.max_draft_tokens());
  std::sort(counts.begin(), counts.end(), std::greater<int64_t>());
  counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
  const size_t buckets = std::max<size_t>(1, options_.bucket_edges.size());
  bucket_arms_.assign(buckets, {});
  for (size_t g = 0; g < counts.size(); ++g) {
    const size_t bucket = std::min(g, buckets - 1);
    for (size_t a = 0; a < strategies_.size(); ++a) {
      if (strategies_[a].max_draft_tokens() == counts[g]) bucket_arms_[bucket].push_back(a);
    }
  }
  for (size_t b = 1; b < buckets; ++b) {
    if (bucket_arms_[b].empty()) bucket_arms_[b] = bucket_arms_[b - 1];
  }
  if (options_.plain_arm) {
    for (auto& arms : bucket_arms_) arms.push_back(plain_arm_index());
  }
}

int64_t StrategyBandit::BucketOf(int64_t batch_size) const {
  int64_t bucket = 0;
  for (size_t i = 0; i < options_.bucket_edges.size(); ++i) {
    if (batch_size >= options_.bucket_edges[i]) bucket = static_cast<int64_t>(i);
  }
  return bucket;
}

const std::vector<int64_t>& StrategyBandit::ArmsFor(int64_t batch_size) const {
  return bucket_arms_[BucketOf(batch_size)];
}

double StrategyBandit::MedianReward(int64_t batch_size, int64_t arm) const {
  auto b = rewards_.find(batch_size);
  if (b == rewards_.end()) return 0.0;
  auto a = b->second.find(arm);
  if (a == b->second.end() || a->second.empty()) return 0.0;
  std::vector<double> v(a->second.begin(), a->second.end());
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  if (v.size() % 2 == 1) return v[mid];
  const double upper = v[mid];
  return 0.5 * (upper + *std::max_element(v.begin(), v.begin() + mid));
}

int64_t StrategyBandit::Select(int64_t batch_size) {
  const std::vector<int64_t>& arms = ArmsFor(batch_size);
  auto& windows = rewards_[batch_size];
  for (int64_t arm : arms) {
    if (windows[arm].empty()) return arm;
  }
  if (uniform_() < options_.epsilon) {
    const size_t pick = std::min(arms.size() - 1, static_cast<size_t>(uniform_() * arms.size()));
    return arms[pick];
  }
  int64_t best = arms.front();
  double best_reward = MedianReward(batch_size, best);
  for (int64_t arm : arms) {
    const double r = MedianReward(batch_size, arm);
    if (r > best_reward) {
      best = arm;
      best_reward = r;
    }
  }
  return best;
}

void StrategyBandit::Update(int64_t batch_size, int64_t arm, double accepted_length,
                            double step_seconds) {
  const double reward = step_seconds > 0 ? accepted_length * batch_size / step_seconds : 0.0;
  std::deque<double>& w = rewards_[batch_size][arm];
  w.push_back(reward);
  while (static_cast<int64_t>(w.size()) > options_.window) w.pop_front();
}

}  // namespace tlt::speculative
