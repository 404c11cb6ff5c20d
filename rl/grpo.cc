#include "rl/grpo.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace tlt::rl {

std::vector<double> GroupAdvantages(const std::vector<double>& rewards, int64_t group_size,
                                    const AdvantageOptions& options) {
  TORCH_CHECK(group_size > 0 && rewards.size() % group_size == 0,
              "GroupAdvantages: ", rewards.size(), " rewards do not split into groups of ",
              group_size);
  std::vector<double> out(rewards.size(), 0.0);
  for (size_t g = 0; g < rewards.size(); g += group_size) {
    double mean = 0;
    for (int64_t i = 0; i < group_size; ++i) mean += rewards[g + i];
    mean /= group_size;
    bool all_equal = true;
    double var = 0;
    for (int64_t i = 0; i < group_size; ++i) {
      all_equal = all_equal && rewards[g + i] == rewards[g];
      var += (rewards[g + i] - mean) * (rewards[g + i] - mean);
    }
    if (all_equal) continue;  // exactly zero, whatever the rounding of mean
    double std = group_size > 1 ? std::sqrt(var / (group_size - 1)) : 0.0;
    for (int64_t i = 0; i < group_size; ++i) {
      double a = rewards[g + i] - mean;
      out[g + i] = options.scale_by_std ? a / (std + options.epsilon) : a;
    }
  }
  return out;
}

torch::Tensor BroadcastAdvantages(const std::vector<double>& advantages,
                                  const torch::Tensor& mask) {
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == static_cast<int64_t>(advantages.size()),
              "BroadcastAdvantages: mask ", mask.sizes(), " vs ", advantages.size(), " advantages");
  torch::Tensor a = torch::tensor(advantages, torch::kFloat64).to(mask.device());
  torch::Tensor m = mask.to(torch::kFloat32);
  return a.to(torch::kFloat32).unsqueeze(1) * m;
}

const char* LossAggregationName(LossAggregation aggregation) {
  switch (aggregation) {
    case LossAggregation::kTokenMean:
      return "token-mean";
    case LossAggregation::kSeqMeanTokenMean:
      return "seq-mean-token-mean";
    case LossAggregation::kSeqMeanTokenSumNorm:
      return "seq-mean-token-sum-norm";
  }
  return "?";
}

torch::Tensor AggregateLoss(const torch::Tensor& loss, const torch::Tensor& mask,
                            LossAggregation aggregation, const LossNormalizers& n) {
  TORCH_CHECK(loss.sizes() == mask.sizes(), "AggregateLoss: loss ", loss.sizes(), " vs mask ",
              mask.sizes());
  torch::Tensor m = mask.to(loss.scalar_type());
  torch::Tensor masked = loss * m;
  if (aggregation == LossAggregation::kTokenMean) {
    double tokens = n.num_tokens > 0 ? n.num_tokens : std::max(1.0, m.sum().item<double>());
    return masked.sum() / tokens;
  }
  torch::Tensor tokens_per_seq = m.sum(1);
  torch::Tensor has_tokens = (tokens_per_seq > 0).to(loss.scalar_type());
  double seqs =
      n.num_sequences > 0 ? n.num_sequences : std::max(1.0, has_tokens.sum().item<double>());
  torch::Tensor per_seq;
  if (aggregation == LossAggregation::kSeqMeanTokenMean) {
    per_seq = masked.sum(1) / tokens_per_seq.clamp_min(1.0);
  } else {
    double norm = n.sum_norm > 0 ? n.sum_norm : static_cast<double>(mask.size(1));
    per_seq = masked.sum(1) / norm;
  }
  return (per_seq * has_tokens).sum() / seqs;
}

torch::Tensor KlPenalty(const torch::Tensor& logprobs, const torch::Tensor& ref_logprobs,
                        KlEstimator estimator, double clamp) {
  torch::Tensor kl;
  if (estimator == KlEstimator::kK1) {
    kl = logprobs - ref_logprobs;
  } else {
    torch::Tensor d = ref_logprobs - logprobs;
    kl = torch::exp(d) - d - 1;
  }
  return clamp > 0 ? kl.clamp(-clamp, clamp) : kl;
}

torch::Tensor TokenEntropy(const torch::Tensor& logits) {
  torch::Tensor lp = torch::log_softmax(
      logits.to(torch::promote_types(logits.scalar_type(), torch::kFloat32)), -1);
  return -(lp.exp() * lp).sum(-1);
}

torch::Tensor TokenLogProbs(const torch::Tensor& logits, const torch::Tensor& targets) {
  torch::Tensor lp = torch::log_softmax(
      logits.to(torch::promote_types(logits.scalar_type(), torch::kFloat32)), -1);
  return lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
}

namespace {
double MaskedMean(const torch::Tensor& x, const torch::Tensor& m, double tokens) {
  return tokens > 0 ? (x.detach() * m).sum().item<double>() / tokens : 0.0;
}
}  // namespace

PolicyLossOutput ComputePolicyLoss(const PolicyLossInput& in, const PolicyLossOptions& o) {
  TORCH_CHECK(in.logprobs.sizes() == in.old_logprobs.sizes() &&
                  in.logprobs.sizes() == in.advantages.sizes() &&
                  in.logprobs.sizes() == in.mask.sizes(),
              "ComputePolicyLoss: logprobs/old_logprobs/advantages/mask shapes differ");
  const torch::Tensor& A = in.advantages;
  torch::Tensor m = in.mask.to(in.logprobs.scalar_type());
  torch::Tensor log_ratio = (in.logprobs - in.old_logprobs.detach()).clamp(-20.0, 20.0);
  torch::Tensor ratio = torch::exp(log_ratio);
  torch::Tensor loss1 = -A * ratio;
  torch::Tensor loss2 = -A * ratio.clamp(1.0 - o.clip_eps_low, 1.0 + o.clip_eps_high);
  torch::Tensor clipped = torch::max(loss1, loss2);
  torch::Tensor per_token = clipped;
  torch::Tensor dual_mask = torch::zeros_like(m);
  if (o.dual_clip > 1.0) {
    torch::Tensor loss3 = -A * o.dual_clip;
    torch::Tensor negative = A < 0;
    per_token = torch::where(negative, torch::min(clipped, loss3), clipped);
    dual_mask = (negative & (clipped > loss3)).to(m.scalar_type());
  }

  PolicyLossOutput out;
  PolicyLossMetrics& mt = out.metrics;
  mt.num_tokens = m.sum().item<double>();
  mt.clip_fraction = MaskedMean((loss2 > loss1).to(m.scalar_type()), m, mt.num_tokens);
  mt.dual_clip_fraction = MaskedMean(dual_mask, m, mt.num_tokens);
  mt.approx_kl = MaskedMean(-log_ratio, m, mt.num_tokens);

  torch::Tensor loss = AggregateLoss(per_token, in.mask, o.aggregation, in.normalizers);
  out.pg_loss = loss.detach();
  if (o.kl_coef > 0) {
    TORCH_CHECK(in.ref_logprobs.defined(), "ComputePolicyLoss: kl_coef > 0 needs ref_logprobs");
    torch::Tensor kl = KlPenalty(in.logprobs, in.ref_logprobs.detach(), o.kl_estimator, o.kl_clamp);
    torch::Tensor kl_loss = AggregateLoss(kl, in.mask, o.aggregation, in.normalizers);
    out.kl_loss = kl_loss.detach();
    mt.kl = MaskedMean(kl, m, mt.num_tokens);
    loss = loss + o.kl_coef * kl_loss;
  }
  if (in.entropy.defined()) {
    mt.entropy = MaskedMean(in.entropy, m, mt.num_tokens);
  }
  if (o.entropy_coef > 0) {
    TORCH_CHECK(in.entropy.defined(), "ComputePolicyLoss: entropy_coef > 0 needs entropy");
    torch::Tensor entropy_loss = AggregateLoss(in.entropy, in.mask, o.aggregation, in.normalizers);
    out.entropy_loss = entropy_loss.detach();
    loss = loss - o.entropy_coef * entropy_loss;
  }
  out.loss = loss;
  return out;
}

}  // namespace tlt::rl
