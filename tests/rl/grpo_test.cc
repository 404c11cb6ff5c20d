// GRPO math against float64 references written as explicit loops over tokens.
#include "rl/grpo.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace tlt::rl {
namespace {

constexpr double kTol = 1e-12;  // float64 inputs: only summation order differs

TEST(GroupAdvantagesTest, MatchesHandComputedGroups) {
  std::vector<double> r = {1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5, 3, 1, 2, 0};
  std::vector<double> a = GroupAdvantages(r, 4);
  for (int g = 0; g < 3; ++g) {
    double mean = 0, var = 0;
    for (int i = 0; i < 4; ++i) mean += r[g * 4 + i] / 4;
    for (int i = 0; i < 4; ++i) var += (r[g * 4 + i] - mean) * (r[g * 4 + i] - mean) / 3;
    for (int i = 0; i < 4; ++i) {
      double want = g == 1 ? 0.0 : (r[g * 4 + i] - mean) / (std::sqrt(var) + 1e-6);
      EXPECT_NEAR(a[g * 4 + i], want, kTol) << g << "," << i;
    }
  }
  // Group 0: mean .5, std sqrt(1/3): +-0.866.
  EXPECT_NEAR(a[0], 0.5 / std::sqrt(1.0 / 3.0), 1e-5);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(a[i], 0.0);  // equal rewards: exactly zero
  std::vector<double> raw = GroupAdvantages(r, 4, AdvantageOptions{1e-6, false});
  EXPECT_NEAR(raw[8], 3 - 1.5, kTol);
  EXPECT_NEAR(raw[11], 0 - 1.5, kTol);
  // Broadcast puts each response's advantage on its masked tokens only.
  torch::Tensor mask = torch::tensor({1, 1, 0, 0, 1, 1}, torch::kFloat32).view({2, 3});
  torch::Tensor b = BroadcastAdvantages({2.0, -1.0}, mask);
  EXPECT_TRUE(torch::equal(b, torch::tensor({2, 2, 0, 0, -1, -1}, torch::kFloat32).view({2, 3})));
}

struct Batch {
  torch::Tensor logp, old_logp, adv, mask, ref, entropy;
};

// B=6 responses of up to T=7 tokens; ratios spread widely so that both clips and the dual clip
// fire; one response has no tokens at all.
Batch MakeBatch() {
  torch::manual_seed(7);
  const int64_t B = 6, T = 7;
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Batch b;
  b.old_logp = -torch::rand({B, T}, o) * 3;
  b.logp = b.old_logp + torch::randn({B, T}, o) * 0.9;
  b.logp[1][0] = b.old_logp[1][0] + 1.5;  // ratio 4.5 with A < 0: the dual clip caps it
  b.logp[2][1] = b.old_logp[2][1] + 1.2;
  b.ref = b.old_logp + torch::randn({B, T}, o) * 4;  // large gaps hit the KL clamp
  std::vector<double> adv = {1.3, -0.7, -2.0, 0.4, 0.0, -1.1};
  std::vector<int64_t> lens = {7, 3, 5, 1, 4, 0};
  b.mask = torch::zeros({B, T}, o);
  for (int64_t i = 0; i < B; ++i) b.mask[i].narrow(0, T - 7, lens[i]).fill_(1.0);
  b.adv = BroadcastAdvantages(adv, b.mask).to(torch::kFloat64);
  b.entropy = torch::rand({B, T}, o) * 2;
  return b;
}

double RefTokenLoss(double logp, double old, double a, const PolicyLossOptions& o) {
  double ratio = std::exp(std::clamp(logp - old, -20.0, 20.0));
  double l1 = -a * ratio;
  double l2 = -a * std::clamp(ratio, 1 - o.clip_eps_low, 1 + o.clip_eps_high);
  double l = std::max(l1, l2);
  if (o.dual_clip > 1 && a < 0) l = std::min(l, -a * o.dual_clip);
  return l;
}

double RefKl(double logp, double ref, KlEstimator e, double clamp) {
  double kl = e == KlEstimator::kK1 ? logp - ref : std::exp(ref - logp) - (ref - logp) - 1;
  return std::clamp(kl, -clamp, clamp);
}

// Aggregates per-token values v[i][t] under mask m by hand.
double RefAggregate(const std::vector<std::vector<double>>& v, const torch::Tensor& mask,
                    LossAggregation agg) {
  auto m = mask.accessor<double, 2>();
  double total = 0, tokens = 0, seq_sum = 0, seqs = 0;
  for (int64_t i = 0; i < mask.size(0); ++i) {
    double s = 0, n = 0;
    for (int64_t t = 0; t < mask.size(1); ++t) {
      s += v[i][t] * m[i][t];
      n += m[i][t];
    }
    total += s;
    tokens += n;
    if (n == 0) continue;
    seqs += 1;
    seq_sum += agg == LossAggregation::kSeqMeanTokenMean ? s / n : s / mask.size(1);
  }
  return agg == LossAggregation::kTokenMean ? total / tokens : seq_sum / seqs;
}

TEST(PolicyLossTest, EveryOptionMatchesLoopReference) {
  Batch b = MakeBatch();
  auto lp = b.logp.accessor<double, 2>(), old = b.old_logp.accessor<double, 2>();
  auto adv = b.adv.accessor<double, 2>(), ref = b.ref.accessor<double, 2>();
  auto ent = b.entropy.accessor<double, 2>(), m = b.mask.accessor<double, 2>();
  const int64_t B = b.logp.size(0), T = b.logp.size(1);
  for (auto agg : {LossAggregation::kTokenMean, LossAggregation::kSeqMeanTokenMean,
                   LossAggregation::kSeqMeanTokenSumNorm}) {
    for (double dual : {3.0, 0.0}) {
      for (auto est : {KlEstimator::kK1, KlEstimator::kLowVarKl}) {
        PolicyLossOptions o;
        o.aggregation = agg;
        o.dual_clip = dual;
        o.kl_coef = 0.001;
        o.kl_estimator = est;
        o.entropy_coef = 0.01;
        PolicyLossInput in{b.logp, b.old_logp, b.adv, b.mask, b.ref, b.entropy, {}};
        PolicyLossOutput out = ComputePolicyLoss(in, o);

        std::vector<std::vector<double>> pg(B, std::vector<double>(T)), kl = pg, en = pg;
        double clipped = 0, dual_clipped = 0, approx = 0, tokens = 0, kl_mean = 0;
        for (int64_t i = 0; i < B; ++i) {
          for (int64_t t = 0; t < T; ++t) {
            pg[i][t] = RefTokenLoss(lp[i][t], old[i][t], adv[i][t], o);
            kl[i][t] = RefKl(lp[i][t], ref[i][t], est, 10.0);
            en[i][t] = ent[i][t];
            if (m[i][t] == 0) continue;
            double ratio = std::exp(lp[i][t] - old[i][t]);
            double l1 = -adv[i][t] * ratio;
            double l2 = -adv[i][t] * std::clamp(ratio, 0.8, 1.28);
            clipped += l2 > l1;
            dual_clipped += dual > 1 && adv[i][t] < 0 && std::max(l1, l2) > -adv[i][t] * dual;
            approx += old[i][t] - lp[i][t];
            kl_mean += kl[i][t];
            tokens += 1;
          }
        }
        double want_pg = RefAggregate(pg, b.mask, agg);
        double want_kl = RefAggregate(kl, b.mask, agg);
        double want_en = RefAggregate(en, b.mask, agg);
        SCOPED_TRACE(std::string(LossAggregationName(agg)) + " dual=" + std::to_string(dual));
        EXPECT_NEAR(out.pg_loss.item<double>(), want_pg, kTol);
        EXPECT_NEAR(out.kl_loss.item<double>(), want_kl, kTol);
        EXPECT_NEAR(out.entropy_loss.item<double>(), want_en, kTol);
        EXPECT_NEAR(out.loss.item<double>(), want_pg + 0.001 * want_kl - 0.01 * want_en, kTol);
        EXPECT_EQ(out.metrics.num_tokens, tokens);
        EXPECT_NEAR(out.metrics.clip_fraction, clipped / tokens, kTol);
        EXPECT_NEAR(out.metrics.dual_clip_fraction, dual_clipped / tokens, kTol);
        EXPECT_NEAR(out.metrics.approx_kl, approx / tokens, kTol);
        EXPECT_NEAR(out.metrics.kl, kl_mean / tokens, kTol);
        // The batch exercises every branch (else the test would prove little).
        EXPECT_GT(clipped, 2);
        if (dual > 1) EXPECT_GT(dual_clipped, 0);
      }
    }
  }
}

TEST(PolicyLossTest, KlClampAndEstimators) {
  torch::Tensor lp = torch::tensor({-1.0, -0.5, -20.0}, torch::kFloat64);
  torch::Tensor ref = torch::tensor({-1.2, -3.0, -0.1}, torch::kFloat64);
  torch::Tensor k1 = KlPenalty(lp, ref, KlEstimator::kK1);
  torch::Tensor k3 = KlPenalty(lp, ref, KlEstimator::kLowVarKl);
  for (int i = 0; i < 3; ++i) {
    double l = lp[i].item<double>(), r = ref[i].item<double>();
    EXPECT_NEAR(k1[i].item<double>(), std::clamp(l - r, -10.0, 10.0), kTol);
    EXPECT_NEAR(k3[i].item<double>(), std::clamp(std::exp(r - l) - (r - l) - 1, -10.0, 10.0), kTol);
  }
  EXPECT_EQ(k3[2].item<double>(), 10.0);  // exp(19.9) clamped
  EXPECT_EQ(k1[2].item<double>(), -10.0);
  EXPECT_GT(KlPenalty(lp, ref, KlEstimator::kLowVarKl, 0)[2].item<double>(), 1e8);  // unclamped
}

TEST(PolicyLossTest, EntropyAndLogProbsMatchLoops) {
  torch::manual_seed(3);
  torch::Tensor logits = torch::randn({2, 3, 5}, torch::kFloat64) * 2;
  torch::Tensor targets = torch::randint(0, 5, {2, 3}, torch::kInt64);
  torch::Tensor h = TokenEntropy(logits), lp = TokenLogProbs(logits, targets);
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 3; ++t) {
      double z = 0;
      for (int v = 0; v < 5; ++v) z += std::exp(logits[b][t][v].item<double>());
      double ent = 0;
      for (int v = 0; v < 5; ++v) {
        double p = std::exp(logits[b][t][v].item<double>()) / z;
        ent -= p * std::log(p);
      }
      EXPECT_NEAR(h[b][t].item<double>(), ent, kTol);
      int64_t k = targets[b][t].item<int64_t>();
      EXPECT_NEAR(lp[b][t].item<double>(), logits[b][t][k].item<double>() - std::log(z), kTol);
    }
  }
}

TEST(PolicyLossTest, GradientMatchesFiniteDifferences) {
  Batch b = MakeBatch();
  PolicyLossOptions o;
  o.kl_coef = 0.05;
  o.aggregation = LossAggregation::kSeqMeanTokenMean;
  torch::Tensor logp = b.logp.clone().requires_grad_(true);
  PolicyLossInput in{logp, b.old_logp, b.adv, b.mask, b.ref, {}, {}};
  ComputePolicyLoss(in, o).loss.backward();
  auto loss_at = [&](const torch::Tensor& x) {
    PolicyLossInput i2{x, b.old_logp, b.adv, b.mask, b.ref, {}, {}};
    return ComputePolicyLoss(i2, o).loss.item<double>();
  };
  const double h = 1e-6;
  for (int64_t i = 0; i < 6; ++i) {
    for (int64_t t = 0; t < 7; ++t) {
      torch::Tensor plus = b.logp.clone(), minus = b.logp.clone();
      plus[i][t] += h;
      minus[i][t] -= h;
      double fd = (loss_at(plus) - loss_at(minus)) / (2 * h);
      EXPECT_NEAR(logp.grad()[i][t].item<double>(), fd, 1e-6) << i << "," << t;
    }
  }
}

TEST(PolicyLossTest, MicroBatchesWithWholeBatchNormalizersSumToWholeLoss) {
  Batch b = MakeBatch();
  for (auto agg : {LossAggregation::kTokenMean, LossAggregation::kSeqMeanTokenMean,
                   LossAggregation::kSeqMeanTokenSumNorm}) {
    PolicyLossOptions o;
    o.aggregation = agg;
    PolicyLossInput whole{b.logp, b.old_logp, b.adv, b.mask, {}, {}, {}};
    double want = ComputePolicyLoss(whole, o).loss.item<double>();
    LossNormalizers n;
    n.num_tokens = b.mask.sum().item<double>();
    n.num_sequences = (b.mask.sum(1) > 0).sum().item<double>();
    double got = 0;
    for (int64_t start : {0, 2, 5}) {
      int64_t len = start == 0 ? 2 : start == 2 ? 3 : 1;
      auto s = [&](const torch::Tensor& x) { return x.narrow(0, start, len); };
      PolicyLossInput part{s(b.logp), s(b.old_logp), s(b.adv), s(b.mask), {}, {}, n};
      got += ComputePolicyLoss(part, o).loss.item<double>();
    }
    EXPECT_NEAR(got, want, kTol) << LossAggregationName(agg);
  }
}

}  // namespace
}  // namespace tlt::rl
