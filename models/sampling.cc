#include "models/sampling.h"

#include <torch/torch.h>

#include <limits>

#include "models/splitmix64.h"

namespace tlt::models {

double CounterUniform(uint64_t seed, uint64_t counter, uint64_t stream) {
  uint64_t z = SplitMix64(SplitMix64(seed ^ SplitMix64(stream)) + counter);
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

torch::Tensor ProcessedLogProbs(const torch::Tensor& logits,
                                const std::vector<SamplingParams>& params) {
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) == static_cast<int64_t>(params.size()),
              "ProcessedLogProbs: logits must be [B, V] with one SamplingParams per row");
  const int64_t B = logits.size(0), V = logits.size(1);
  const double inf = std::numeric_limits<double>::infinity();
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  std::vector<double> temps(B), top_p(B);
  std::vector<int64_t> top_k(B);
  std::vector<bool> greedy(B);
  bool any_top_p = false, any_greedy = false;
  for (int64_t b = 0; b < B; ++b) {
    const SamplingParams& p = params[b];
    greedy[b] = p.temperature <= 0;
    any_greedy = any_greedy || greedy[b];
    temps[b] = greedy[b] ? 1.0 : p.temperature;
    top_k[b] = (p.top_k <= 0 || p.top_k > V) ? V : p.top_k;
    top_p[b] = p.top_p;
    any_top_p = any_top_p || p.top_p < 1.0;
  }
  const torch::Device dev = logits.device();
  torch::Tensor x =
      logits.to(torch::kFloat32) / torch::tensor(temps, f64).to(dev, torch::kFloat32).unsqueeze(1);
  auto sorted = x.sort(-1, /*descending=*/true);
  torch::Tensor values = std::get<0>(sorted), order = std::get<1>(sorted);
  torch::Tensor k_index = (torch::tensor(top_k, torch::kInt64) - 1).to(dev).unsqueeze(1);
  torch::Tensor threshold = values.gather(1, k_index);  // [B, 1]
  x = x.masked_fill(x < threshold, -inf);
  if (any_top_p) {
    torch::Tensor kept = values.masked_fill(values < threshold, -inf);
    torch::Tensor probs = torch::softmax(kept, -1);
    torch::Tensor before = probs.cumsum(-1) - probs;  // mass of strictly more likely tokens
    torch::Tensor p = torch::tensor(top_p, f64).to(dev, torch::kFloat32).unsqueeze(1);
    torch::Tensor remove_sorted = (before >= p) & (p < 1.0);
    torch::Tensor remove = torch::zeros_like(remove_sorted).scatter(1, order, remove_sorted);
    x = x.masked_fill(remove, -inf);
  }
  torch::Tensor out = torch::log_softmax(x, -1);
  if (any_greedy) {
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < B; ++b) {
      if (greedy[b]) rows.push_back(b);
    }
    torch::Tensor r = torch::tensor(rows, torch::kInt64).to(dev);
    torch::Tensor best = logits.index_select(0, r).argmax(-1, /*keepdim=*/true);
    torch::Tensor one_hot = torch::full({static_cast<int64_t>(rows.size()), V}, -inf, out.options())
                                .scatter(1, best, 0.0);
    out.index_copy_(0, r, one_hot);
  }
  return out;
}

SampledTokens SampleFromLogProbs(const torch::Tensor& logprobs,
                                 const std::vector<double>& uniforms) {
  const int64_t B = logprobs.size(0), V = logprobs.size(1);
  TORCH_CHECK(static_cast<int64_t>(uniforms.size()) == B, "one uniform per row");
  torch::Tensor cdf = logprobs.to(torch::kFloat64).exp().cumsum(-1).contiguous();
  torch::Tensor u = torch::tensor(uniforms, torch::kFloat64).to(cdf.device()).unsqueeze(1) *
                    cdf.narrow(1, V - 1, 1);
  torch::Tensor idx =
      torch::searchsorted(cdf, u, /*out_int32=*/false, /*right=*/true).clamp_max(V - 1);
  torch::Tensor lp = logprobs.gather(1, idx);
  // Guard against landing on a removed token through rounding at the very top of the CDF.
  torch::Tensor bad = torch::isinf(lp);
  if (bad.any().item<bool>()) {
    torch::Tensor fallback = logprobs.argmax(-1, /*keepdim=*/true);
    idx = torch::where(bad, fallback, idx);
    lp = logprobs.gather(1, idx);
  }
  idx = idx.squeeze(1).cpu();
  lp = lp.squeeze(1).to(torch::kFloat32).cpu();
  SampledTokens out;
  out.tokens.assign(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + B);
  out.logprobs.assign(lp.data_ptr<float>(), lp.data_ptr<float>() + B);
  return out;
}

SampledTokens Sample(const torch::Tensor& logits, const std::vector<SamplingParams>& params,
                     const std::vector<uint64_t>& seeds, const std::vector<uint64_t>& counters) {
  std::vector<double> u(seeds.size());
  for (size_t b = 0; b < seeds.size(); ++b) u[b] = CounterUniform(seeds[b], counters[b]);
  return SampleFromLogProbs(ProcessedLogProbs(logits, params), u);
}

SampledTensors SampleOnDevice(const torch::Tensor& logits, const SamplingTensors& params,
                              bool filter) {
  TORCH_CHECK(logits.dim() == 2, "SampleOnDevice: logits must be [B, V]");
  const int64_t V = logits.size(1);
  const double inf = std::numeric_limits<double>::infinity();
  torch::Tensor temperature = params.temperature.to(torch::kFloat32);
  torch::Tensor greedy = (temperature <= 0).unsqueeze(1);  // [B, 1]
  torch::Tensor temps = torch::where(temperature <= 0, torch::ones_like(temperature), temperature);
  torch::Tensor x = logits.to(torch::kFloat32) / temps.unsqueeze(1);
  if (filter) {
    auto sorted = x.sort(-1, /*descending=*/true);
    torch::Tensor values = std::get<0>(sorted), order = std::get<1>(sorted);
    torch::Tensor k = params.top_k;
    k = torch::where((k <= 0) | (k > V), torch::full_like(k, V), k) - 1;
    torch::Tensor threshold = values.gather(1, k.unsqueeze(1));  // [B, 1]
    x = x.masked_fill(x < threshold, -inf);
    torch::Tensor kept = values.masked_fill(values < threshold, -inf);
    torch::Tensor probs = torch::softmax(kept, -1);
    torch::Tensor before = probs.cumsum(-1) - probs;
    torch::Tensor p = params.top_p.to(torch::kFloat32).unsqueeze(1);
    torch::Tensor remove_sorted = (before >= p) & (p < 1.0);
    torch::Tensor remove = torch::zeros_like(remove_sorted).scatter(1, order, remove_sorted);
    x = x.masked_fill(remove, -inf);
  }
  torch::Tensor lp = torch::log_softmax(x, -1);
  torch::Tensor cdf = lp.to(torch::kFloat64).exp().cumsum(-1).contiguous();
  torch::Tensor u = params.uniforms.to(torch::kFloat64).unsqueeze(1) * cdf.narrow(1, V - 1, 1);
  torch::Tensor idx =
      torch::searchsorted(cdf, u, /*out_int32=*/false, /*right=*/true).clamp_max(V - 1);
  torch::Tensor token_lp = lp.gather(1, idx);
  idx = torch::where(torch::isinf(token_lp), lp.argmax(-1, /*keepdim=*/true), idx);
  token_lp = lp.gather(1, idx);
  idx = torch::where(greedy, logits.argmax(-1, /*keepdim=*/true), idx);
  token_lp = torch::where(greedy, torch::zeros_like(token_lp), token_lp);
  return {idx.squeeze(1), token_lp.squeeze(1)};
}

}  // namespace tlt::models
