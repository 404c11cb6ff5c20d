#include "models/sampling.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace tlt::models {
namespace {

// HF's warpers in float64: temperature, top-k (TopKLogitsWarper), top-p (TopPLogitsWarper,
// ascending sort, remove cumulative <= 1 - p, keep at least one), softmax.
torch::Tensor ReferenceProbs(const torch::Tensor& logits, const SamplingParams& p) {
  torch::Tensor x = logits.to(torch::kFloat64) / p.temperature;
  const double inf = std::numeric_limits<double>::infinity();
  if (p.top_k > 0 && p.top_k < x.size(0)) {
    double kth = std::get<0>(x.topk(p.top_k))[-1].item<double>();
    x = x.masked_fill(x < kth, -inf);
  }
  if (p.top_p < 1.0) {
    auto [sorted, idx] = x.sort(0, /*descending=*/false);
    torch::Tensor cum = torch::softmax(sorted, 0).cumsum(0);
    torch::Tensor remove = cum <= (1 - p.top_p);
    remove[-1] = false;
    x = x.masked_fill(torch::zeros_like(remove).scatter(0, idx, remove), -inf);
  }
  return torch::softmax(x, 0);
}

TEST(SamplingTest, CounterUniformIsDeterministicAndSpread) {
  EXPECT_EQ(CounterUniform(7, 3), CounterUniform(7, 3));
  EXPECT_NE(CounterUniform(7, 3), CounterUniform(7, 4));
  EXPECT_NE(CounterUniform(7, 3), CounterUniform(8, 3));
  EXPECT_NE(CounterUniform(7, 3, 0), CounterUniform(7, 3, 1));
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = CounterUniform(i, 0);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.01);
}

struct Setting {
  double t;
  int64_t k;
  double p;
};

class SamplingSettingTest : public ::testing::TestWithParam<Setting> {};

TEST_P(SamplingSettingTest, ProcessedMatchesReferenceAndChiSquare) {
  const Setting s = GetParam();
  const SamplingParams params{s.t, s.k, s.p};
  torch::manual_seed(11);
  const int64_t V = 12, N = 20000;
  torch::Tensor logits = torch::randn({V}) * 1.5;
  torch::Tensor want = ReferenceProbs(logits, params);
  torch::Tensor got = ProcessedLogProbs(logits.unsqueeze(0), {params})[0].exp();
  EXPECT_LT((got.to(torch::kFloat64) - want).abs().max().item<double>(), 1e-6);
  // N draws, one per seed, all in one batch.
  std::vector<uint64_t> seeds(N), counters(N, 0);
  for (int64_t i = 0; i < N; ++i) seeds[i] = 1000 + i;
  SampledTokens out = Sample(logits.unsqueeze(0).expand({N, V}).contiguous(),
                             std::vector<SamplingParams>(N, params), seeds, counters);
  std::vector<int64_t> hist(V, 0);
  auto lp = torch::log(want);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t t = out.tokens[i];
    ASSERT_GT(want[t].item<double>(), 0) << "sampled a removed token " << t;
    ASSERT_NEAR(out.logprobs[i], lp[t].item<double>(), 1e-5);
    ++hist[t];
  }
  double chi2 = 0;
  int df = -1;
  for (int64_t v = 0; v < V; ++v) {
    const double e = want[v].item<double>() * N;
    if (e <= 0) continue;
    chi2 += (hist[v] - e) * (hist[v] - e) / e;
    ++df;
  }
  // 99.9% quantiles of chi-square for df <= 11 are below 31.3.
  EXPECT_LT(chi2, df <= 0 ? 1e-9 : 31.3) << "df " << df;
}

INSTANTIATE_TEST_SUITE_P(Settings, SamplingSettingTest,
                         ::testing::Values(Setting{1.0, 0, 1.0}, Setting{0.7, 0, 1.0},
                                           Setting{1.3, 5, 1.0}, Setting{1.0, 0, 0.8},
                                           Setting{0.8, 6, 0.9}, Setting{2.0, 3, 0.5},
                                           Setting{1.0, 1, 1.0}));

TEST(SamplingTest, GreedyIsArgmaxWithZeroLogProb) {
  torch::Tensor logits = torch::tensor({{0.1f, 3.0f, -1.0f, 3.0f}, {5.0f, 0.0f, 0.0f, 0.0f}});
  SampledTokens out = Sample(logits, {{0.0, 0, 1.0}, {0.0, 2, 0.5}}, {1, 2}, {0, 0});
  EXPECT_EQ(out.tokens, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(out.logprobs, (std::vector<float>{0.0f, 0.0f}));
}

TEST(SamplingTest, RowResultDoesNotDependOnBatch) {
  torch::manual_seed(12);
  torch::Tensor logits = torch::randn({5, 50});
  std::vector<SamplingParams> params = {
      {1.0, 0, 1.0}, {0.7, 10, 0.9}, {0.0, 0, 1.0}, {1.2, 0, 0.95}, {0.9, 20, 1.0}};
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5};
  for (uint64_t step = 0; step < 20; ++step) {
    std::vector<uint64_t> counters(5, step);
    SampledTokens all = Sample(logits, params, seeds, counters);
    for (int64_t b = 0; b < 5; ++b) {
      SampledTokens one = Sample(logits.narrow(0, b, 1), {params[b]}, {seeds[b]}, {step});
      EXPECT_EQ(one.tokens[0], all.tokens[b]);
      EXPECT_FLOAT_EQ(one.logprobs[0], all.logprobs[b]);
    }
  }
}

// SampleOnDevice draws exactly what Sample() draws (bit-identical on CPU); on CUDA (when
// available) the float32 log-probs differ by rounding, so tokens may differ only where a uniform
// falls within rounding of a CDF step: at most 1% of draws, log-probs within 1e-4.
TEST(SamplingTest, SampleOnDeviceMatchesSample) {
  torch::manual_seed(13);
  const int64_t B = 6, V = 300;
  torch::Tensor logits = torch::randn({B, V}) * 2;
  std::vector<SamplingParams> params = {{1.0, 0, 1.0},  {0.7, 10, 0.9}, {0.0, 0, 1.0},
                                        {1.2, 0, 0.95}, {0.9, 20, 1.0}, {0.0, 5, 0.5}};
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5, 6};
  std::vector<torch::Device> devices = {torch::kCPU};
  if (torch::cuda::is_available()) devices.push_back(torch::kCUDA);
  for (const torch::Device& device : devices) {
    int64_t mismatches = 0, draws = 0;
    for (uint64_t step = 0; step < 200; ++step) {
      std::vector<uint64_t> counters(B, step);
      SampledTokens want = Sample(logits, params, seeds, counters);
      std::vector<double> temperature, top_p, uniforms;
      std::vector<int64_t> top_k;
      for (int64_t b = 0; b < B; ++b) {
        temperature.push_back(params[b].temperature);
        top_k.push_back(params[b].top_k);
        top_p.push_back(params[b].top_p);
        uniforms.push_back(CounterUniform(seeds[b], step));
      }
      auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
      SamplingTensors t{torch::tensor(temperature, f64).to(device),
                        torch::tensor(top_k, torch::kInt64).to(device),
                        torch::tensor(top_p, f64).to(device), torch::tensor(uniforms, f64).to(device)};
      SampledTensors got = SampleOnDevice(logits.to(device), t);
      torch::Tensor tokens = got.tokens.cpu(), lps = got.logprobs.cpu();
      for (int64_t b = 0; b < B; ++b) {
        ++draws;
        if (tokens[b].item<int64_t>() != want.tokens[b]) {
          ++mismatches;
          continue;
        }
        if (device.is_cpu()) {
          EXPECT_EQ(lps[b].item<float>(), want.logprobs[b]);
        } else {
          EXPECT_NEAR(lps[b].item<float>(), want.logprobs[b], 1e-4);
        }
      }
    }
    if (device.is_cpu()) {
      EXPECT_EQ(mismatches, 0);
    } else {
      EXPECT_LE(mismatches * 100, draws) << mismatches << " of " << draws << " draws differ";
    }
  }
}

}  // namespace
}  // namespace tlt::models
