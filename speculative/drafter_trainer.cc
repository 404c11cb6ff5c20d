#include "speculative/drafter_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "speculative/strategy.h"

namespace tlt::speculative {

DrafterLossTerms DrafterLoss(const torch::Tensor& h_pred, const torch::Tensor& h_target,
                             const torch::Tensor& head_weight, double hidden_weight,
                             double logit_weight) {
  torch::Tensor pred = h_pred.to(torch::kFloat32), target = h_target.to(torch::kFloat32).detach();
  torch::Tensor head = head_weight.detach().to(torch::kFloat32);
  torch::Tensor diff = (pred - target).abs();
  torch::Tensor smooth = torch::where(diff < 1.0, 0.5 * diff * diff, diff - 0.5);
  DrafterLossTerms out;
  out.hidden_loss = smooth.mean(-1).mean();
  torch::Tensor target_probs = torch::softmax(torch::matmul(target, head.t()), -1);
  torch::Tensor pred_logprobs = torch::log_softmax(torch::matmul(pred, head.t()), -1);
  out.logit_loss = -(target_probs * pred_logprobs).sum(-1).mean();
  out.total = hidden_weight * out.hidden_loss + logit_weight * out.logit_loss;
  return out;
}

struct DrafterTrainer::Packed {
  torch::Tensor tokens;         // [R, T] x_{t+1}
  torch::Tensor hidden_in;      // [R, T, H] h_t
  torch::Tensor hidden_target;  // [N, H] h_{t+1} of the counted pairs
  torch::Tensor counted;        // [N] flat indices into R * T
  torch::Tensor rotary;         // [R, T]
  models::BatchLayout layout;
};

DrafterTrainer::DrafterTrainer(models::Transformer target, Drafter drafter,
                               DrafterTrainerOptions options)
    : target_(std::move(target)), drafter_(std::move(drafter)), options_(options) {}

Result<DrafterTrainer::Packed> DrafterTrainer::Pack(const std::vector<DrafterSample>& batch) {
  const torch::Tensor& embed = target_->model->embed_tokens->weight;
  const torch::Device device = embed.device();
  const int64_t H = target_->config().hidden_size, V = target_->config().vocab_size;
  struct Piece {
    torch::Tensor hidden;  // [n, H] of the whole sample
    const std::vector<int64_t>* tokens;
    int64_t begin, length, prompt_length;
  };
  std::vector<Piece> pieces;
  for (size_t s = 0; s < batch.size(); ++s) {
    const DrafterSample& sample = batch[s];
    const int64_t n = static_cast<int64_t>(sample.tokens.size());
    const std::string where = "drafter sample " + std::to_string(s);
    if (n < 2) return InvalidArgument(where + ": needs at least 2 tokens");
    for (int64_t t : sample.tokens) {
      if (t < 0 || t >= V) return InvalidArgument(where + ": token " + std::to_string(t) + " outside the vocabulary");
    }
    torch::Tensor hidden = sample.hidden;
    if (!hidden.defined()) {
      torch::NoGradGuard no_grad;
      torch::Tensor tokens = torch::tensor(sample.tokens, torch::kInt64).unsqueeze(0).to(device);
      hidden = target_->Forward(tokens, models::BatchLayout::Dense(1, n, device), nullptr,
                                models::ForwardOptions().return_hidden(true)).hidden[0];
    }
    if (hidden.dim() != 2 || hidden.size(0) != n || hidden.size(1) != H) {
      return InvalidArgument(where + ": hidden must be [" + std::to_string(n) + ", " +
                             std::to_string(H) + "]");
    }
    for (int64_t begin = 0; begin < n - 1; begin += options_.window) {
      pieces.push_back({hidden.detach().to(device), &sample.tokens, begin,
                        std::min(options_.window, n - 1 - begin), sample.prompt_length});
    }
  }
  // First fit, in order, into rows of at most `window` pairs.
  std::vector<std::vector<size_t>> rows;
  std::vector<int64_t> fill;
  for (size_t p = 0; p < pieces.size(); ++p) {
    size_t r = 0;
    while (r < rows.size() && fill[r] + pieces[p].length > options_.window) ++r;
    if (r == rows.size()) {
      rows.emplace_back();
      fill.push_back(0);
    }
    rows[r].push_back(p);
    fill[r] += pieces[p].length;
  }
  const int64_t R = static_cast<int64_t>(rows.size());
  const int64_t T = *std::max_element(fill.begin(), fill.end());
  std::vector<int64_t> tokens(R * T, 0), rotary(R * T, 0), segment(R * T, -1), counted;
  std::vector<torch::Tensor> hidden_rows, targets;
  for (int64_t r = 0; r < R; ++r) {
    std::vector<torch::Tensor> parts;
    int64_t col = 0;
    for (size_t p : rows[r]) {
      const Piece& piece = pieces[p];
      for (int64_t i = 0; i < piece.length; ++i, ++col) {
        const int64_t t = piece.begin + i;
        tokens[r * T + col] = (*piece.tokens)[t + 1];
        rotary[r * T + col] = i;
        segment[r * T + col] = static_cast<int64_t>(p);
        if (t + 1 >= piece.prompt_length) {
          counted.push_back(r * T + col);
          targets.push_back(piece.hidden[t + 1]);
        }
      }
      parts.push_back(piece.hidden.narrow(0, piece.begin, piece.length));
    }
    if (col < T) parts.push_back(torch::zeros({T - col, H}, parts.front().options()));
    hidden_rows.push_back(torch::cat(parts, 0));
  }
  if (counted.empty()) return InvalidArgument("drafter batch has no response tokens to learn");
  Packed out;
  out.tokens = torch::tensor(tokens, torch::kInt64).view({R, T}).to(device);
  out.rotary = torch::tensor(rotary, torch::kInt64).view({R, T}).to(device);
  out.hidden_in = torch::stack(hidden_rows);
  out.hidden_target = torch::stack(targets);
  out.counted = torch::tensor(counted, torch::kInt64).to(device);
  out.layout = models::BatchLayout::Make(std::vector<int64_t>(R, 0), std::vector<int64_t>(R, T), T,
                                         {}, device);
  torch::Tensor seg = torch::tensor(segment, torch::kInt64).view({R, T});
  torch::Tensor causal = torch::ones({T, T}, torch::kBool).tril();
  torch::Tensor mask = (seg.unsqueeze(2) == seg.unsqueeze(1)) & (seg.unsqueeze(2) >= 0) & causal;
  mask = mask | torch::eye(T, torch::kBool);  // padding attends to itself (no empty rows)
  out.layout.mask = mask.unsqueeze(1).to(device);
  return out;
}

Result<DrafterTrainStats> DrafterTrainer::Run(const std::vector<DrafterSample>& batch, bool train) {
  try {
    ASSIGN_OR_RETURN(Packed packed, Pack(batch));
    torch::AutoGradMode grad_mode(train);
    torch::Tensor h_pred = drafter_->Forward(target_, packed.tokens, packed.hidden_in,
                                             packed.layout, nullptr, packed.rotary);
    h_pred = h_pred.reshape({-1, h_pred.size(-1)}).index_select(0, packed.counted);
    const torch::Tensor& head = LmHeadWeight(target_);
    DrafterLossTerms loss = DrafterLoss(h_pred, packed.hidden_target, head,
                                        options_.hidden_loss_weight, options_.logit_loss_weight);
    DrafterTrainStats stats;
    stats.loss = loss.total.item<double>();
    stats.hidden_loss = loss.hidden_loss.item<double>();
    stats.logit_loss = loss.logit_loss.item<double>();
    stats.tokens = packed.counted.size(0);
    {
      torch::NoGradGuard no_grad;
      torch::Tensor w = head.to(torch::kFloat32);
      torch::Tensor a = torch::matmul(h_pred.to(torch::kFloat32), w.t()).argmax(-1);
      torch::Tensor b = torch::matmul(packed.hidden_target.to(torch::kFloat32), w.t()).argmax(-1);
      stats.top1_accuracy = (a == b).to(torch::kFloat64).mean().item<double>();
    }
    if (train) {
      drafter_->zero_grad();
      loss.total.backward();
      torch::NoGradGuard no_grad;
      double norm2 = 0;
      for (auto& p : drafter_->parameters()) {
        if (p.grad().defined()) norm2 += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
      }
      stats.grad_norm = std::sqrt(norm2);
      double scale = 1.0;
      if (options_.max_grad_norm > 0 && stats.grad_norm > options_.max_grad_norm) {
        scale = options_.max_grad_norm / (stats.grad_norm + 1e-6);
      }
      ++step_;
      const double lr = options_.learning_rate;
      const double c1 = 1.0 - std::pow(options_.beta1, step_);
      const double c2 = 1.0 - std::pow(options_.beta2, step_);
      for (auto& item : drafter_->named_parameters()) {
        torch::Tensor& p = item.value();
        if (!p.grad().defined()) continue;
        torch::Tensor g = p.grad().to(torch::kFloat32) * scale;
        torch::Tensor& m = exp_avg_[item.key()];
        torch::Tensor& v = exp_avg_sq_[item.key()];
        if (!m.defined()) m = torch::zeros_like(g);
        if (!v.defined()) v = torch::zeros_like(g);
        m.mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
        v.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
        torch::Tensor update = (m / c1) / ((v / c2).sqrt() + options_.epsilon);
        torch::Tensor master = p.to(torch::kFloat32) * (1.0 - lr * options_.weight_decay) - lr * update;
        p.copy_(master);
      }
    }
    stats.step = step_;
    return stats;
  } catch (const c10::Error& e) {
    return Internal(std::string("drafter training: ") + e.what_without_backtrace());
  }
}

Result<DrafterTrainStats> DrafterTrainer::TrainStep(const std::vector<DrafterSample>& batch) {
  drafter_->train();
  return Run(batch, true);
}

Result<DrafterTrainStats> DrafterTrainer::Evaluate(const std::vector<DrafterSample>& batch) {
  drafter_->eval();
  return Run(batch, false);
}

Status DrafterTrainer::SaveCheckpoint(const std::string& dir) {
  RETURN_NOT_OK(SaveDrafter(drafter_, dir));
  models::TensorMap state;
  for (const auto& [name, t] : exp_avg_) state[name + ".exp_avg"] = t;
  for (const auto& [name, t] : exp_avg_sq_) state[name + ".exp_avg_sq"] = t;
  return models::WriteSafetensors((std::filesystem::path(dir) / "optimizer.safetensors").string(),
                                  state, {{"step", std::to_string(step_)}});
}

Status DrafterTrainer::LoadCheckpoint(const std::string& dir) {
  ASSIGN_OR_RETURN(models::CheckpointTensors tensors, models::ReadCheckpointTensors(dir));
  RETURN_NOT_OK(drafter_->LoadTensors(tensors).WithContext("loading drafter " + dir));
  const std::string path = (std::filesystem::path(dir) / "optimizer.safetensors").string();
  if (!std::filesystem::exists(path)) return Status::OK();
  ASSIGN_OR_RETURN(auto file, models::SafetensorsFile::Open(path));
  exp_avg_.clear();
  exp_avg_sq_.clear();
  const torch::Device device = drafter_->fc->weight.device();
  for (const std::string& name : file->names()) {
    ASSIGN_OR_RETURN(torch::Tensor t, file->Get(name));
    auto ends_with = [&](const std::string& s) {
      return name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends_with(".exp_avg_sq")) {
      exp_avg_sq_[name.substr(0, name.size() - 11)] = t.clone().to(device);
    } else if (ends_with(".exp_avg")) {
      exp_avg_[name.substr(0, name.size() - 8)] = t.clone().to(device);
    }
  }
  auto step = file->metadata().find("step");
  step_ = step == file->metadata().end() ? 0 : std::stoll(step->second);
  return Status::OK();
}

}  // namespace tlt::speculative
