#include "rl/learner.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>

namespace tlt::rl {
namespace {

// bfloat16 autocast on CUDA for the scope; a no-op elsewhere.
class AutocastScope {
 public:
  explicit AutocastScope(bool enable) : enabled_(enable) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
  }

 private:
  bool enabled_;
};

torch::Device DeviceOf(models::Transformer& m) { return m->parameters().front().device(); }

}  // namespace

// Rows [begin, end) of a batch, right-padded. Column t of logprob-shaped tensors [B, T-1] is the
// prediction of token t + 1.
struct Learner::Packed {
  torch::Tensor tokens;   // [B, T] int64
  torch::Tensor targets;  // [B, T-1]
  torch::Tensor mask;     // [B, T-1] float32: 1 where the target is a response token
  std::vector<double> advantages;
};

Learner::Learner(models::Transformer policy, const LearnerOptions& options,
                 models::Transformer reference)
    : policy_(std::move(policy)),
      reference_(std::move(reference)),
      options_(options),
      device_(DeviceOf(policy_)) {
  const OptimizerOptions& o = options.optimizer;
  optimizer_ = std::make_unique<torch::optim::AdamW>(policy_->parameters(),
                                                     torch::optim::AdamWOptions(o.lr)
                                                         .betas({o.beta1, o.beta2})
                                                         .eps(o.eps)
                                                         .weight_decay(o.weight_decay));
  if (reference_) {
    reference_->eval();
    for (auto& p : reference_->parameters()) p.set_requires_grad(false);
  }
}

Learner::Packed Learner::Pack(const std::vector<Sample>& batch, int64_t begin, int64_t end) const {
  int64_t T = 2;
  for (int64_t i = begin; i < end; ++i) {
    T = std::max<int64_t>(T, batch[i].prompt.size() + batch[i].response.size());
  }
  const int64_t B = end - begin;
  std::vector<int64_t> tokens(B * T, options_.pad_token_id);
  std::vector<float> mask(B * (T - 1), 0.0f);
  Packed p;
  for (int64_t i = 0; i < B; ++i) {
    const Sample& s = batch[begin + i];
    std::copy(s.prompt.begin(), s.prompt.end(), tokens.begin() + i * T);
    std::copy(s.response.begin(), s.response.end(), tokens.begin() + i * T + s.prompt.size());
    for (size_t r = 0; r < s.response.size(); ++r) mask[i * (T - 1) + s.prompt.size() - 1 + r] = 1;
    p.advantages.push_back(s.advantage);
  }
  p.tokens = torch::tensor(tokens, torch::kInt64).view({B, T}).to(device_);
  p.targets = p.tokens.narrow(1, 1, T - 1);
  p.mask = torch::tensor(mask, torch::kFloat32).view({B, T - 1}).to(device_);
  return p;
}

torch::Tensor Learner::Logits(models::Transformer& model, const torch::Tensor& tokens) {
  AutocastScope autocast(options_.autocast_bf16 && device_.is_cuda());
  models::BatchLayout layout =
      models::BatchLayout::Dense(tokens.size(0), tokens.size(1), tokens.device());
  return model->Forward(tokens, layout, nullptr).logits.to(torch::kFloat32);
}

std::vector<std::vector<double>> Learner::ResponseLogProbs(const std::vector<Sample>& batch,
                                                           models::Transformer model) {
  if (!model) model = policy_;
  torch::NoGradGuard no_grad;
  std::vector<std::vector<double>> out;
  const int64_t n = static_cast<int64_t>(batch.size()),
                mb = std::max<int64_t>(1, options_.micro_batch_size);
  for (int64_t b = 0; b < n; b += mb) {
    Packed p = Pack(batch, b, std::min(n, b + mb));
    torch::Tensor logits = Logits(model, p.tokens);
    torch::Tensor lp =
        TokenLogProbs(logits.narrow(1, 0, logits.size(1) - 1), p.targets).to(torch::kFloat64).cpu();
    for (int64_t i = 0; i < lp.size(0); ++i) {
      const Sample& s = batch[b + i];
      std::vector<double> row;
      for (size_t r = 0; r < s.response.size(); ++r) {
        row.push_back(lp[i][s.prompt.size() - 1 + r].item<double>());
      }
      out.push_back(std::move(row));
    }
  }
  return out;
}

bool Learner::HasSignal(const std::vector<Sample>& batch) const {
  bool signal = options_.loss.kl_coef > 0 || options_.loss.entropy_coef > 0;
  for (const Sample& s : batch) signal = signal || (s.advantage != 0 && !s.response.empty());
  return signal;
}

double Learner::CurrentLr() const {
  const OptimizerOptions& o = options_.optimizer;
  if (o.warmup_steps <= 0) return o.lr;
  return o.lr * std::min(1.0, double(optimizer_steps_ + 1) / double(o.warmup_steps));
}

double Learner::FinishOptimizerStep() {
  double norm = 0;
  if (options_.optimizer.max_grad_norm > 0) {
    norm =
        torch::nn::utils::clip_grad_norm_(policy_->parameters(), options_.optimizer.max_grad_norm);
  } else {
    double sq = 0;
    for (auto& p : policy_->parameters()) {
      if (p.grad().defined()) sq += p.grad().pow(2).sum().item<double>();
    }
    norm = std::sqrt(sq);
  }
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(CurrentLr());
  }
  optimizer_->step();
  ++optimizer_steps_;
  return norm;
}

Result<MetricsRecord> Learner::GrpoStep(const std::vector<Sample>& batch) {
  if (batch.empty()) return InvalidArgument("GrpoStep: empty batch");
  for (const Sample& s : batch) {  // before ResponseLogProbs, which needs a prompt token
    if (s.prompt.empty()) return InvalidArgument("GrpoStep: a sample has an empty prompt");
  }
  try {
    if (!HasSignal(batch) && options_.skip_no_signal_batches) {  // skipped: no forward needed
      std::vector<std::vector<double>> unused;
      for (const Sample& s : batch) unused.emplace_back(s.response.size(), 0.0);
      return GrpoStep(batch, unused);
    }
    return GrpoStep(batch, ResponseLogProbs(batch));
  } catch (const c10::Error& e) {
    return Internal(std::string("GrpoStep: ") + e.what_without_backtrace());
  }
}

Result<MetricsRecord> Learner::GrpoStep(const std::vector<Sample>& batch,
                                        const std::vector<std::vector<double>>& old) {
  if (batch.empty()) return InvalidArgument("GrpoStep: empty batch");
  if (old.size() != batch.size())
    return InvalidArgument("GrpoStep: old log-probs for another batch");
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].prompt.empty()) return InvalidArgument("GrpoStep: a sample has an empty prompt");
    if (old[i].size() != batch[i].response.size()) {
      return InvalidArgument("GrpoStep: old log-probs of sample " + std::to_string(i) +
                             " do not match its response length");
    }
  }
  const PolicyLossOptions& lo = options_.loss;
  MetricsRecord m;
  m["lr"] = CurrentLr();
  if (!HasSignal(batch) && options_.skip_no_signal_batches) {
    m["skipped"] = 1;
    return m;
  }
  if (lo.kl_coef > 0 && !reference_)
    return InvalidArgument("GrpoStep: kl_coef > 0 needs a reference model");
  try {
    std::vector<std::vector<double>> ref;
    if (lo.kl_coef > 0) ref = ResponseLogProbs(batch, reference_);
    // Per-token tensors aligned with Pack's layout.
    auto aligned = [&](const std::vector<std::vector<double>>& values, const Packed& p,
                       int64_t begin) {
      torch::Tensor t = torch::zeros(p.mask.sizes(), torch::kFloat32);
      for (int64_t i = 0; i < p.mask.size(0); ++i) {
        const Sample& s = batch[begin + i];
        for (size_t r = 0; r < s.response.size(); ++r) {
          t[i][s.prompt.size() - 1 + r] = values[begin + i][r];
        }
      }
      return t.to(device_);
    };
    const int64_t n = static_cast<int64_t>(batch.size());
    const int64_t minis = std::clamp<int64_t>(options_.mini_batches, 1, n);
    const int64_t epochs = std::max<int64_t>(1, options_.ppo_epochs);
    const int64_t mb = std::max<int64_t>(1, options_.micro_batch_size);
    // Token-weighted sums of clip_fraction, dual_clip_fraction, approx_kl, kl, entropy; over
    // all passes and over the last one.
    double tokens_all = 0, tokens_last = 0, sums[5] = {0, 0, 0, 0, 0}, clip_last = 0, kl_last = 0;
    double norm_sum = 0, loss_sum = 0, pg_sum = 0, kl_sum = 0;
    policy_->train();
    for (int64_t epoch = 0; epoch < epochs; ++epoch) {
      const bool last = epoch + 1 == epochs;
      for (int64_t k = 0; k < minis; ++k) {
        const int64_t begin = n * k / minis, end = n * (k + 1) / minis;
        LossNormalizers norm;
        for (int64_t i = begin; i < end; ++i) {
          norm.num_tokens += batch[i].response.size();
          norm.num_sequences += batch[i].response.empty() ? 0 : 1;
        }
        norm.num_tokens = std::max(1.0, norm.num_tokens);
        norm.num_sequences = std::max(1.0, norm.num_sequences);
        optimizer_->zero_grad();
        for (int64_t b = begin; b < end; b += mb) {
          const int64_t e = std::min(end, b + mb);
          Packed p = Pack(batch, b, e);
          torch::Tensor logits = Logits(policy_, p.tokens);
          logits = logits.narrow(1, 0, logits.size(1) - 1);
          PolicyLossInput in;
          in.logprobs = TokenLogProbs(logits, p.targets);
          in.old_logprobs = aligned(old, p, b);
          in.advantages = BroadcastAdvantages(p.advantages, p.mask);
          in.mask = p.mask;
          if (lo.kl_coef > 0) in.ref_logprobs = aligned(ref, p, b);
          in.entropy = lo.entropy_coef > 0 ? TokenEntropy(logits) : TokenEntropy(logits.detach());
          in.normalizers = norm;
          PolicyLossOutput out = ComputePolicyLoss(in, lo);
          out.loss.backward();
          const PolicyLossMetrics& pm = out.metrics;
          tokens_all += pm.num_tokens;
          sums[0] += pm.clip_fraction * pm.num_tokens;
          sums[1] += pm.dual_clip_fraction * pm.num_tokens;
          sums[2] += pm.approx_kl * pm.num_tokens;
          sums[3] += pm.kl * pm.num_tokens;
          sums[4] += pm.entropy * pm.num_tokens;
          if (last) {
            tokens_last += pm.num_tokens;
            clip_last += pm.clip_fraction * pm.num_tokens;
            kl_last += pm.approx_kl * pm.num_tokens;
          }
          loss_sum += out.loss.item<double>();
          pg_sum += out.pg_loss.item<double>();
          if (out.kl_loss.defined()) kl_sum += out.kl_loss.item<double>();
        }
        norm_sum += FinishOptimizerStep();
      }
    }
    const double steps = double(minis * epochs), t = std::max(1.0, tokens_all);
    m["loss"] = loss_sum / steps;
    m["pg_loss"] = pg_sum / steps;
    m["kl_loss"] = kl_sum / steps;
    m["clip_fraction"] = sums[0] / t;
    m["dual_clip_fraction"] = sums[1] / t;
    m["approx_kl"] = sums[2] / t;
    m["kl"] = sums[3] / t;
    m["entropy"] = sums[4] / t;
    m["clip_fraction_last_epoch"] = clip_last / std::max(1.0, tokens_last);
    m["approx_kl_last_epoch"] = kl_last / std::max(1.0, tokens_last);
    m["grad_norm"] = norm_sum / steps;
    m["optimizer_steps"] = steps;
    m["tokens"] = tokens_last;
    m["skipped"] = 0;
    return m;
  } catch (const c10::Error& e) {
    return Internal(std::string("GrpoStep: ") + e.what_without_backtrace());
  }
}

Result<MetricsRecord> Learner::SftStep(const std::vector<Sample>& batch) {
  if (batch.empty()) return InvalidArgument("SftStep: empty batch");
  try {
    MetricsRecord m;
    m["lr"] = CurrentLr();
    double tokens = 0;
    for (const Sample& s : batch) tokens += s.response.size();
    tokens = std::max(1.0, tokens);
    policy_->train();
    optimizer_->zero_grad();
    double loss_sum = 0;
    const int64_t n = static_cast<int64_t>(batch.size());
    const int64_t mb = std::max<int64_t>(1, options_.micro_batch_size);
    for (int64_t b = 0; b < n; b += mb) {
      Packed p = Pack(batch, b, std::min(n, b + mb));
      torch::Tensor logits = Logits(policy_, p.tokens);
      torch::Tensor lp = TokenLogProbs(logits.narrow(1, 0, logits.size(1) - 1), p.targets);
      torch::Tensor loss = -(lp * p.mask).sum() / tokens;
      loss.backward();
      loss_sum += loss.item<double>();
    }
    m["grad_norm"] = FinishOptimizerStep();
    m["sft_loss"] = loss_sum;
    m["tokens"] = tokens;
    return m;
  } catch (const c10::Error& e) {
    return Internal(std::string("SftStep: ") + e.what_without_backtrace());
  }
}

models::CheckpointTensors Learner::ExportWeights() const {
  models::CheckpointTensors out;
  for (auto& [name, t] : policy_->NamedTensors()) out.tensors[name] = t.detach();
  return out;
}

}  // namespace tlt::rl
