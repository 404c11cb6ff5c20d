// Transformer: a decoder-only Llama/Qwen2 causal language model on LibTorch.
//
// Module tree and parameter names are Hugging Face's, so a checkpoint maps 1:1:
//   model.embed_tokens.weight, model.layers.N.{input_layernorm, post_attention_layernorm}.weight,
//   model.layers.N.self_attn.{q,k,v,o}_proj.{weight,bias}, model.layers.N.mlp.{gate,up,down}_proj
//   .weight, model.norm.weight, lm_head.weight (absent when tie_word_embeddings: the head then
//   uses model.embed_tokens.weight).
// Llama and Qwen2 differ only by config flags (q/k/v bias, tied head, rope theta).
//
// Forward() runs a right-padded batch (see BatchLayout) with or without a KV cache and returns
// float32 logits and, on request, the last hidden state (after the final norm, before lm_head).
// The caller commits cache lengths after a forward (KvCache::SetLength).
//
// Like every LibTorch module: not thread-safe; move it to a device/dtype with ->to().
#pragma once

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "models/attention.h"
#include "models/kv_cache.h"
#include "models/layers.h"
#include "models/model_config.h"
#include "models/safetensors.h"
#include "runtime/status.h"

namespace tlt::models {

// Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).
class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const BatchLayout& layout, KvCache* cache, int64_t layer);

  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

// The body HF calls `model`: embeddings, layers, final norm. Returns the normed hidden state.
class TransformerBodyImpl : public torch::nn::Module {
 public:
  explicit TransformerBodyImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& tokens, const BatchLayout& layout, KvCache* cache);

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  RotaryEmbedding rotary_;
};
TORCH_MODULE(TransformerBody);

struct ForwardOptions {
  TORCH_ARG(bool, last_token_only) = false;  // logits only at each row's last real token
  TORCH_ARG(bool, return_hidden) = false;    // also return the final hidden state
  // Also return the final hidden state of every position ([B, T, H] in all_hidden), whatever
  // last_token_only says (the drafter trains on prompt hidden states).
  TORCH_ARG(bool, return_all_hidden) = false;
};

struct ForwardOutput {
  torch::Tensor logits;  // float32 [B, T, V], or [B, V] with last_token_only
  torch::Tensor hidden;  // model dtype [B, T, H] or [B, H]; undefined unless return_hidden
  torch::Tensor all_hidden;  // model dtype [B, T, H]; undefined unless return_all_hidden
};

class TransformerImpl : public torch::nn::Module {
 public:
  // Random initialization (normal, std 0.02; norms ones; biases zero), float32 on CPU.
  explicit TransformerImpl(const ModelConfig& config);

  // tokens [B, T] int64 on the model's device, laid out by `layout`.
  ForwardOutput Forward(const torch::Tensor& tokens, const BatchLayout& layout, KvCache* cache,
                        const ForwardOptions& options = {});
  // Dense causal forward from position 0, no cache: float32 logits [B, T, V].
  torch::Tensor forward(const torch::Tensor& tokens);

  const ModelConfig& config() const { return config_; }
  // Expected checkpoint tensor names and shapes (HF names).
  ShapeMap ExpectedShapes() const;
  // Copies `tensors` into the parameters in place (any dtype/device; converted). Names and
  // shapes must match exactly (see CheckTensorShapes); for a tied head, a stray lm_head.weight
  // is ignored. Parameters keep their storage, so references to them stay valid.
  Status LoadTensors(const CheckpointTensors& tensors);
  // Parameters as HF names -> tensors (views, not copies).
  TensorMap NamedTensors() const;

  TransformerBody model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  ModelConfig config_;
};
TORCH_MODULE(Transformer);

// The initial values of a freshly built decoder module (Transformer, Drafter), in the order
// of module.named_parameters(): every parameter whose name contains "norm" is set to 1, every
// one whose name ends in ".bias" to 0, and every other one drawn from normal(0, 0.02). The
// draws come from `generator`, or from LibTorch's default CPU generator (torch::manual_seed)
// when it is null, so a given seed yields the same values as before this was shared.
// Runs without autograd; the module must have all its parameters registered.
void InitializeParameters(torch::nn::Module& module, at::Generator* generator = nullptr);

// Parses the torch_dtype names used by HF configs ("float32", "bfloat16", "float16").
Result<torch::Dtype> DtypeFromName(const std::string& name);
std::string DtypeName(torch::Dtype dtype);

// Loads a HF directory (config.json + safetensors) onto `device` in `dtype`.
Result<Transformer> LoadTransformer(const std::string& dir, torch::Dtype dtype,
                                    torch::Device device = torch::kCPU);
// Writes config.json (torch_dtype = the parameters' dtype) and safetensors in HF layout.
Status SaveTransformer(Transformer& model, const std::string& dir, int64_t max_shard_bytes = 0);

}  // namespace tlt::models
