// Sampling: the processed next-token distribution and seeded draws from it.
//
// The processed distribution of a row is HF's warper chain: divide the logits by the
// temperature, keep the top-k logits (ties with the k-th value are kept), then keep the smallest
// set of most likely tokens whose probability reaches top_p, and renormalize. Temperature 0
// means greedy: all mass on the argmax (the first one on ties). The speculative-decoding layer
// reuses ProcessedLogProbs() so verification and plain sampling agree on the distribution.
//
// Randomness is counter-based: the uniform for a draw is a hash of (seed, counter, stream), so a
// request's samples depend only on its seed, how many tokens it has drawn and its own logits,
// never on what else is in the batch or on the device. Tokens are drawn by inverse CDF over the
// vocabulary in id order. All functions are pure and thread-safe.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace tlt::models {

struct SamplingParams {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0 or >= vocab: no top-k
  double top_p = 1.0;        // 1: no nucleus filter; must be > 0
};

// logits [B, V] (any float dtype, any device) -> float32 log-probs [B, V] of the processed
// distribution, -inf for removed tokens. params.size() == B.
torch::Tensor ProcessedLogProbs(const torch::Tensor& logits,
                                const std::vector<SamplingParams>& params);

// A uniform double in [0, 1), a pure function of its arguments (splitmix64 hashing).
double CounterUniform(uint64_t seed, uint64_t counter, uint64_t stream = 0);

struct SampledTokens {
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;  // log-prob of each token under the processed distribution
};

// Draws row b's token as the first id whose cumulative probability exceeds uniforms[b].
SampledTokens SampleFromLogProbs(const torch::Tensor& logprobs,
                                 const std::vector<double>& uniforms);

// ProcessedLogProbs then SampleFromLogProbs with CounterUniform(seeds[b], counters[b]).
SampledTokens Sample(const torch::Tensor& logits, const std::vector<SamplingParams>& params,
                     const std::vector<uint64_t>& seeds, const std::vector<uint64_t>& counters);

// Per-row sampling parameters as [B] tensors on the logits' device (the CUDA decoder keeps them
// in device buffers so a step needs no host work).
struct SamplingTensors {
  torch::Tensor temperature;  // any float dtype; <= 0: greedy
  torch::Tensor top_k;        // int64; <= 0 or > V: none
  torch::Tensor top_p;        // any float dtype, in (0, 1]
  torch::Tensor uniforms;     // float64 in [0, 1): CounterUniform(seed, counter) per row
};

struct SampledTensors {
  torch::Tensor tokens;    // int64 [B]
  torch::Tensor logprobs;  // float32 [B]
};

// The same distribution and draw as Sample() (bit-identical on one device), as tensor ops with
// no host synchronization. `filter` false skips top-k/top-p (the caller knows no row uses them).
SampledTensors SampleOnDevice(const torch::Tensor& logits, const SamplingTensors& params,
                              bool filter = true);

}  // namespace tlt::models
