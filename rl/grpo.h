// GRPO math: group-relative advantages, the clipped policy-gradient surrogate, loss aggregation,
// KL to a reference policy and the entropy bonus (see docs/rl.md and tlt-algorithms.md).
//
// Shapes: a batch of B responses, each padded to T tokens. `mask` [B, T] (float or bool) is 1 on
// the response tokens that count in the loss and 0 on prompt and padding positions. Log-prob
// tensors [B, T] hold, at column t, log pi(token_t | tokens before it) under one policy.
//
// Micro-batching: the aggregation functions take optional normalizers (the number of masked
// tokens, or of sequences, in the WHOLE batch). Summing the losses of micro-batches computed with
// the whole batch's normalizers gives exactly the loss (and gradient) of the whole batch at once;
// with normalizers <= 0 each call normalizes by its own tokens / sequences.
//
// All functions are pure (no state, no randomness), thread-safe and differentiable where the
// inputs require grad. They work on any device and floating dtype; metrics come back as doubles.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace tlt::rl {

struct AdvantageOptions {
  double epsilon = 1e-6;     // added to the group's std before dividing
  bool scale_by_std = true;  // false: A = r - mean (Dr. GRPO)
};

// rewards: num_groups * group_size values, group-major (responses of one prompt adjacent).
// A_i = (r_i - mean_g) / (std_g + epsilon), std unbiased (n - 1, as torch.std; 0 for groups of
// one). A group whose rewards are all equal gets exactly 0. group_size must divide the count.
std::vector<double> GroupAdvantages(const std::vector<double>& rewards, int64_t group_size,
                                    const AdvantageOptions& options = {});

// advantages [B] -> [B, T] (each response's advantage on its masked tokens, 0 elsewhere).
torch::Tensor BroadcastAdvantages(const std::vector<double>& advantages, const torch::Tensor& mask);

enum class LossAggregation {
  kTokenMean,            // sum over all masked tokens / number of masked tokens (default)
  kSeqMeanTokenMean,     // mean over sequences (with >= 1 token) of each one's token mean
  kSeqMeanTokenSumNorm,  // mean over sequences of (token sum / constant length), Dr. GRPO
};
const char* LossAggregationName(LossAggregation aggregation);

// Normalizers of a whole batch, for micro-batching (see the header comment). <= 0: use the
// tensor's own counts.
struct LossNormalizers {
  double num_tokens = 0;     // masked tokens in the whole batch (kTokenMean)
  double num_sequences = 0;  // sequences with >= 1 masked token (kSeqMean*)
  double sum_norm = 0;       // kSeqMeanTokenSumNorm divisor; <= 0: mask.size(1)
};

// loss [B, T] -> scalar.
torch::Tensor AggregateLoss(const torch::Tensor& loss, const torch::Tensor& mask,
                            LossAggregation aggregation, const LossNormalizers& normalizers = {});

enum class KlEstimator {
  kK1,        // logp - ref_logp
  kLowVarKl,  // k3: exp(ref - logp) - (ref - logp) - 1 (verl's low_var_kl)
};

// Per-token KL estimate of pi from pi_ref, clamped to [-clamp, clamp] (clamp <= 0: no clamp).
torch::Tensor KlPenalty(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs,
                        KlEstimator estimator, double clamp = 10.0);

// logits [B, T, V] -> entropy of softmax per position [B, T] (float32 or better).
torch::Tensor TokenEntropy(const torch::Tensor& logits);
// logits [B, T, V], targets [B, T] int64 -> log_softmax(logits) gathered at targets [B, T].
torch::Tensor TokenLogProbs(const torch::Tensor& logits, const torch::Tensor& targets);

struct PolicyLossOptions {
  double clip_eps_low = 0.2;    // ratio clipped below at 1 - clip_eps_low
  double clip_eps_high = 0.28;  // and above at 1 + clip_eps_high (clip-higher)
  double dual_clip = 3.0;       // for A < 0 the loss is capped at -A * dual_clip; <= 1: off
  LossAggregation aggregation = LossAggregation::kTokenMean;
  double kl_coef = 0.0;  // > 0 needs ref_logprobs; added as + kl_coef * KL
  KlEstimator kl_estimator = KlEstimator::kLowVarKl;
  double kl_clamp = 10.0;
  double entropy_coef = 0.0;  // > 0 needs entropy; added as - entropy_coef * entropy
};

struct PolicyLossInput {
  torch::Tensor logprobs;       // [B, T] current policy (carries the gradient)
  torch::Tensor old_logprobs;   // [B, T] policy that sampled the data (no gradient)
  torch::Tensor advantages;     // [B, T]
  torch::Tensor mask;           // [B, T]
  torch::Tensor ref_logprobs;   // [B, T], needed when kl_coef > 0
  torch::Tensor entropy;        // [B, T], needed when entropy_coef > 0 (may carry gradient)
  LossNormalizers normalizers;  // whole-batch counts when this is a micro-batch
};

// Token-mean metrics over the masked tokens of the input (not aggregated like the loss).
struct PolicyLossMetrics {
  double num_tokens = 0;          // masked tokens (weight for averaging micro-batches)
  double clip_fraction = 0;       // tokens where the clipped branch is the larger loss
  double dual_clip_fraction = 0;  // A < 0 tokens where the dual clip caps the loss
  double approx_kl = 0;           // mean(old_logp - logp), verl's ppo_kl
  double kl = 0;                  // mean KL penalty to the reference (0 without one)
  double entropy = 0;             // mean entropy (0 without one)
};

struct PolicyLossOutput {
  torch::Tensor loss;          // scalar: pg_loss + kl_coef * kl_loss - entropy_coef * entropy_loss
  torch::Tensor pg_loss;       // scalar, aggregated like loss (detached)
  torch::Tensor kl_loss;       // scalar (detached); undefined without KL
  torch::Tensor entropy_loss;  // scalar (detached); undefined without entropy
  PolicyLossMetrics metrics;
};

// ratio = exp(logp - old_logp) (log-ratio clamped to [-20, 20]);
// per token: l = max(-A * ratio, -A * clip(ratio, 1 - eps_low, 1 + eps_high)); for A < 0 with
// dual clip c: l = min(l, -A * c). Aggregated by options.aggregation.
PolicyLossOutput ComputePolicyLoss(const PolicyLossInput& input, const PolicyLossOptions& options);

}  // namespace tlt::rl
