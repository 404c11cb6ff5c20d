// Drafter: the EAGLE-style draft model that proposes tokens for speculative decoding.
//
// One decoder layer (models::DecoderLayer, the target's shapes) behind an input projection:
// at position t the input is fc(concat(embed(x_{t+1}), h_t)), where h_t is the target's final
// hidden state at t (after the final norm, before the LM head: what Transformer::Forward returns
// with return_hidden) and x_{t+1} the token that follows. fc is Linear(2H -> H) with bias. The
// output is the prediction of h_{t+1}; draft logits are the target's LM head applied to it (no
// extra norm: h is already normed, as in EAGLE-1). The embedding and the LM head are the
// target's, shared and frozen: they are arguments of the calls, never drafter parameters, and
// never saved in drafter checkpoints.
//
// Parameter names: fc.weight, fc.bias, layers.0.<HF decoder layer names>. A checkpoint directory
// holds config.json (the target's config with num_hidden_layers = 1) and model.safetensors with
// exactly those tensors; the trainer adds optimizer.safetensors beside them.
//
// Like every LibTorch module: not thread-safe; ->to() moves it.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "models/attention.h"
#include "models/cuda_decoder.h"
#include "models/kv_cache.h"
#include "models/model_config.h"
#include "models/safetensors.h"
#include "models/transformer.h"
#include "runtime/status.h"

namespace tlt::speculative {

// The drafter's config for a target: the target's with one layer.
models::ModelConfig DrafterConfig(const models::ModelConfig& target);

class DrafterImpl : public torch::nn::Module {
 public:
  // Random initialization (normal std 0.02, norms ones, biases zero) from `seed`, float32 CPU.
  DrafterImpl(const models::ModelConfig& target_config, uint64_t seed);

  // tokens [B, T] (the x_{t+1}), hidden [B, T, H] (the h_t), laid out by `layout` (positions are
  // the cache write positions); rotary_positions [B, T] (undefined: layout.positions). With a
  // cache (one layer, see CacheOptions) the layer reads and writes it. Returns h_pred [B, T, H].
  torch::Tensor Forward(models::Transformer& target, const torch::Tensor& tokens,
                        const torch::Tensor& hidden, const models::BatchLayout& layout,
                        models::KvCache* cache, const torch::Tensor& rotary_positions = {});
  // Draft logits (float32) of predicted hidden states: target's LM head.
  static torch::Tensor Logits(models::Transformer& target, const torch::Tensor& hidden);

  // Fails with kInvalidArgument naming the field when this drafter cannot serve `target`.
  Status CheckFits(const models::ModelConfig& target) const;
  models::KvCacheOptions CacheOptions(int64_t max_slots, int64_t max_length, torch::Dtype dtype,
                                      torch::Device device) const;
  const models::ModelConfig& config() const { return config_; }
  // Trainable tensors by checkpoint name (views of the parameters).
  models::TensorMap NamedTensors() const;
  Status LoadTensors(const models::CheckpointTensors& tensors);

  torch::nn::Linear fc{nullptr};
  torch::nn::ModuleList layers{nullptr};

 private:
  models::ModelConfig config_;
};
TORCH_MODULE(Drafter);

// `tlt drafter init`: an untrained drafter for `target`, seeded, in the target's dtype/device.
Drafter InitDrafter(models::Transformer& target, uint64_t seed);
// Writes config.json and model.safetensors (trainable weights only) into `dir`.
Status SaveDrafter(Drafter& drafter, const std::string& dir);
// Loads a drafter checkpoint for `target` (moved to the target's dtype/device); a checkpoint
// made for another target shape fails with kInvalidArgument saying what differs.
Result<Drafter> LoadDrafter(const std::string& dir, models::Transformer& target);
// The drafter as a models::CudaDecoder model: the target's embedding and LM head around the
// drafter's input projection and layer, no final norm. The tensors are the live parameters, so
// in-place weight loads reach a decoder built from them (CudaDecoder::Refresh).
models::DecoderWeights DrafterDecoderWeights(models::Transformer target, Drafter drafter);

}  // namespace tlt::speculative
