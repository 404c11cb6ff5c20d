// DrafterTrainer: trains a Drafter on (tokens, target hidden states) recorded by rollouts.
//
// Data: a DrafterSample is one sequence x_0..x_{n-1} with the target's final hidden states
// h_0..h_{n-1} (after the final norm; undefined: the trainer computes them with a target
// forward). Pair t (0 <= t <= n-2) feeds the drafter (x_{t+1}, h_t) and asks for h_{t+1}; it
// counts in the loss only when x_{t+1} is a response token (t + 1 >= prompt_length), since
// those are the positions the drafter drafts from during generation.
//
// Loss per counted pair, averaged over the counted pairs of a step:
//   1.0 * mean_over_H SmoothL1(h_pred, h_target)                       (beta 1)
//   + 0.1 * -sum_v softmax(head(h_target))_v * log_softmax(head(h_pred))_v
// where head is the target's LM head (frozen). Sequences are packed into rows of at most
// `window` pairs (longer ones are cut into pieces); a pair attends only to earlier pairs of its
// own piece, with rotary positions restarting at 0 per piece.
//
// Optimizer: AdamW (decoupled weight decay), global gradient-norm clipping, written out here so
// its state is a plain tensor map that checkpoints to safetensors (optimizer.safetensors beside
// the drafter's model.safetensors; step count in the metadata). Only the drafter's parameters
// are trained; the target is never modified.
//
// TrainStep() does one optimizer step on one batch and returns; an actor calls it repeatedly
// and can stop (or checkpoint) between any two calls. Not thread-safe.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/transformer.h"
#include "runtime/status.h"
#include "speculative/drafter.h"

namespace tlt::speculative {

struct DrafterTrainerOptions {
  double learning_rate = 1e-6;  // online; OfflineDefaults() uses 5e-5
  double beta1 = 0.9;
  double beta2 = 0.95;
  double epsilon = 1e-8;
  double weight_decay = 0.01;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  double hidden_loss_weight = 1.0;
  double logit_loss_weight = 0.1;
  int64_t window = 512;  // pairs per packed row

  static DrafterTrainerOptions OfflineDefaults() {
    DrafterTrainerOptions o;
    o.learning_rate = 5e-5;
    return o;
  }
};

struct DrafterSample {
  std::vector<int64_t> tokens;
  torch::Tensor hidden;       // [n, H] or undefined
  int64_t prompt_length = 1;  // tokens before this index are the prompt
};

struct DrafterLossTerms {
  torch::Tensor total, hidden_loss, logit_loss;  // scalars (float32)
};

// The loss above on counted pairs: h_pred, h_target [N, H], head_weight [V, H].
DrafterLossTerms DrafterLoss(const torch::Tensor& h_pred, const torch::Tensor& h_target,
                             const torch::Tensor& head_weight, double hidden_weight = 1.0,
                             double logit_weight = 0.1);

struct DrafterTrainStats {
  double loss = 0, hidden_loss = 0, logit_loss = 0;
  double top1_accuracy = 0;  // argmax(head(h_pred)) == argmax(head(h_target)) on counted pairs
  double grad_norm = 0;      // before clipping
  int64_t tokens = 0;        // counted pairs
  int64_t step = 0;          // optimizer steps taken so far
};

class DrafterTrainer {
 public:
  // Shares `target` (frozen) and `drafter` (trained in place) with the caller.
  DrafterTrainer(models::Transformer target, Drafter drafter, DrafterTrainerOptions options);

  // One optimizer step on `batch`; kInvalidArgument for bad samples or no counted pair.
  Result<DrafterTrainStats> TrainStep(const std::vector<DrafterSample>& batch);
  // The loss terms of `batch` without a step (no gradients).
  Result<DrafterTrainStats> Evaluate(const std::vector<DrafterSample>& batch);

  // Drafter weights (SaveDrafter) plus optimizer.safetensors into `dir`.
  Status SaveCheckpoint(const std::string& dir);
  // Weights and, when present, the optimizer state from `dir`.
  Status LoadCheckpoint(const std::string& dir);

  int64_t step() const { return step_; }
  Drafter& drafter() { return drafter_; }
  DrafterTrainerOptions& options() { return options_; }

 private:
  struct Packed;
  Result<Packed> Pack(const std::vector<DrafterSample>& batch);
  Result<DrafterTrainStats> Run(const std::vector<DrafterSample>& batch, bool train);

  models::Transformer target_;
  Drafter drafter_;
  DrafterTrainerOptions options_;
  int64_t step_ = 0;
  std::map<std::string, torch::Tensor> exp_avg_, exp_avg_sq_;
};

}  // namespace tlt::speculative
