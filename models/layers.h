// Building blocks of the Llama/Qwen2 decoder, as LibTorch modules (Options + XImpl +
// TORCH_MODULE). Parameter names match Hugging Face so checkpoints map 1:1.
//
// Numerics follow transformers' eager implementation: RMSNorm normalizes in float32 and casts
// back before the weight; rotary cos/sin are computed in float32 and cast to the activation
// dtype. Modules are not thread-safe during forward (like all LibTorch modules).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "models/model_config.h"

namespace tlt::models {

struct RMSNormOptions {
  explicit RMSNormOptions(int64_t dim) : dim_(dim) {}
  TORCH_ARG(int64_t, dim);        // size of the last axis
  TORCH_ARG(double, eps) = 1e-6;  // added to the mean square
};

// y = weight * (x / sqrt(mean(x^2) + eps)); parameter `weight` [dim], initialized to ones.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(const RMSNormOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x);

  RMSNormOptions options;
  torch::Tensor weight;
};
TORCH_MODULE(RMSNorm);

// Rotary position embedding (HF's rotate_half convention: the first and second halves of each
// head vector are the pairs). No parameters.
class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, double theta) : head_dim_(head_dim), theta_(theta) {}
  // cos and sin for int64 `positions` [...], each [..., head_dim], in `dtype`.
  std::pair<torch::Tensor, torch::Tensor> CosSin(const torch::Tensor& positions,
                                                 torch::Dtype dtype) const;
  // x [B, T, heads, head_dim] rotated by cos/sin [B, T, head_dim].
  static torch::Tensor Apply(const torch::Tensor& x, const torch::Tensor& cos,
                             const torch::Tensor& sin);

 private:
  int64_t head_dim_;
  double theta_;
};

// SwiGLU feed-forward: down_proj(silu(gate_proj(x)) * up_proj(x)), no biases.
class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace tlt::models
