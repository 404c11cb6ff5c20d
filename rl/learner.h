// Learner: the policy update of GRPO, and supervised fine-tuning, on a models::Transformer.
//
// A batch is a list of Samples (prompt tokens, response tokens, the response's advantage). The
// learner packs them right-padded into one [B, T] tensor and runs the model with
// BatchLayout::Dense (padding sits after each row's real tokens, so causal attention never lets
// it change a real position); only response tokens count in the loss (the token mask).
//
// GrpoStep(): old log-probs are recomputed by the learner's own model before any update (never
// taken from the rollout engine) and stay fixed for the whole call. The batch is then passed over
// `ppo_epochs` times (PPO-style epochs: from the second pass on the policy differs from the old
// one and the ratio clipping bounds how far it moves); each pass is split into `mini_batches`
// optimizer steps, each accumulating gradients over micro-batches of `micro_batch_size` sequences
// with whole-mini-batch loss normalizers, so the result does not depend on the micro-batch size.
// Every optimizer step: gradient clipping (the pre-clip norm is reported), the warm-up learning
// rate, and AdamW. A batch with no
// learning signal (all advantages 0, no KL or entropy term) is skipped: no optimizer step, so
// weights, moments and weight decay are untouched. With a reference model and kl_coef > 0 the
// KL term uses the reference's log-probs. SftStep(): token-mean cross-entropy on the response
// tokens, with the same micro-batching, clipping and optimizer.
//
// On CUDA with autocast_bf16 the forward passes run under bfloat16 autocast (weights stay
// float32). ExportWeights() gives the policy weights for models::Engine::LoadWeights().
//
// Owns its optimizer; shares the policy module with the caller. Not thread-safe.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "models/safetensors.h"
#include "models/transformer.h"
#include "rl/grpo.h"
#include "rl/metrics.h"
#include "runtime/status.h"

namespace tlt::rl {

struct OptimizerOptions {
  double lr = 1e-5;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  int64_t warmup_steps = 0;    // linear warm-up: lr * min(1, (k + 1) / warmup) at optimizer step k
  double max_grad_norm = 1.0;  // <= 0: no clipping
};

struct LearnerOptions {
  OptimizerOptions optimizer;
  PolicyLossOptions loss;
  int64_t micro_batch_size = 8;
  int64_t mini_batches = 1;   // optimizer steps per pass over the batch
  int64_t ppo_epochs = 1;     // passes over the batch per GrpoStep, same old log-probs
  bool autocast_bf16 = true;  // used on CUDA only
  bool skip_no_signal_batches = true;
  int64_t pad_token_id = 0;
};

struct Sample {
  std::vector<int64_t> prompt;    // >= 1 token
  std::vector<int64_t> response;  // may be empty (contributes nothing)
  double advantage = 0.0;
};

class Learner {
 public:
  // `policy` is trained in place (its device is the learner's); `reference` (optional, may be
  // null) supplies ref log-probs for the KL term and is never updated.
  Learner(models::Transformer policy, const LearnerOptions& options,
          models::Transformer reference = nullptr);

  // Metrics: loss, pg_loss, kl_loss, entropy, clip_fraction, dual_clip_fraction, approx_kl,
  // grad_norm (means over the optimizer steps), clip_fraction_last_epoch, approx_kl_last_epoch,
  // lr (of the first step), optimizer_steps, tokens (per pass), skipped.
  Result<MetricsRecord> GrpoStep(const std::vector<Sample>& batch);
  // The same with the old log-probs given: one vector per sample, one value per response token
  // (as ResponseLogProbs returns them). GrpoStep(b) is GrpoStep(b, ResponseLogProbs(b)).
  Result<MetricsRecord> GrpoStep(const std::vector<Sample>& batch,
                                 const std::vector<std::vector<double>>& old_logprobs);
  // Metrics: sft_loss (token-mean NLL), grad_norm, lr, tokens.
  Result<MetricsRecord> SftStep(const std::vector<Sample>& batch);

  // Per-sample log-probs of the response tokens under `model` (the policy when null), no grad.
  std::vector<std::vector<double>> ResponseLogProbs(const std::vector<Sample>& batch,
                                                    models::Transformer model = nullptr);

  // Policy weights (views) for models::Engine::LoadWeights.
  models::CheckpointTensors ExportWeights() const;

  models::Transformer& policy() { return policy_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  const LearnerOptions& options() const { return options_; }
  int64_t optimizer_steps() const { return optimizer_steps_; }
  void set_optimizer_steps(int64_t steps) { optimizer_steps_ = steps; }
  double CurrentLr() const;

 private:
  struct Packed;
  Packed Pack(const std::vector<Sample>& batch, int64_t begin, int64_t end) const;
  // Forward under autocast when enabled; returns float32 logits [B, T, V].
  torch::Tensor Logits(models::Transformer& model, const torch::Tensor& tokens);
  double FinishOptimizerStep();  // clip, set lr, step; returns the pre-clip grad norm
  // False when no sample has a non-zero advantage and no KL or entropy term is on.
  bool HasSignal(const std::vector<Sample>& batch) const;

  models::Transformer policy_;
  models::Transformer reference_;
  LearnerOptions options_;
  torch::Device device_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t optimizer_steps_ = 0;
};

}  // namespace tlt::rl
