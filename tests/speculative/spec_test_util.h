// Helpers shared by the speculative/ tests: distribution checks on small vocabularies.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "models/sampling.h"

namespace tlt::speculative::testing {

// Processed target log-probs of every row of `logits` [N, V] under one set of params.
inline torch::Tensor Processed(const torch::Tensor& logits, const models::SamplingParams& params) {
  return models::ProcessedLogProbs(logits, std::vector<models::SamplingParams>(logits.size(0), params));
}

inline std::vector<double> RowOf(const torch::Tensor& logprobs, int64_t row) {
  torch::Tensor r = logprobs[row].to(torch::kFloat64).exp().contiguous();
  return std::vector<double>(r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
}

// Chi-square goodness of fit of `counts` against `p` (a generous p < ~1e-4 bound), total
// variation below `max_tv`, and no draw where p is zero.
inline void ExpectDistribution(const std::vector<int64_t>& counts, const std::vector<double>& p,
                               const std::string& what, double max_tv = 0.03) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  ASSERT_GT(n, 500) << what << ": too few samples";
  double chi2 = 0.0, tv = 0.0, mass = 0.0;
  int df = -1;
  for (double x : p) mass += x;
  for (size_t v = 0; v < p.size(); ++v) {
    const double pv = p[v] / mass;
    tv += 0.5 * std::abs(static_cast<double>(counts[v]) / n - pv);
    if (pv < 1e-12) {
      EXPECT_EQ(counts[v], 0) << what << ": token " << v << " has probability 0";
      continue;
    }
    const double e = n * pv;
    chi2 += (counts[v] - e) * (counts[v] - e) / e;
    ++df;
  }
  if (df > 0) {
    EXPECT_LT(chi2, df + 6.0 * std::sqrt(2.0 * df) + 5.0) << what << ": chi2 " << chi2 << " df " << df;
  }
  EXPECT_LT(tv, max_tv) << what << ": total variation " << tv << " over " << n << " samples";
}

}  // namespace tlt::speculative::testing
