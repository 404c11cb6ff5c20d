// Grouped-query self-attention over a right-padded batch, with or without a KV cache.
//
// BatchLayout says where each row of a batch sits: row b holds num_tokens[b] real tokens
// (then padding up to the padded length) at positions start[b] .. start[b] + num_tokens[b] - 1.
// With a cache, row b reads and writes KV-cache slot slots[b] whose first start[b] positions are
// already filled: query i attends to cached keys 0 .. start[b] + i. Without a cache the row is
// self-contained: query i attends to keys 0 .. i of the same row (start[b] only shifts rotary
// positions). Outputs at padded positions are unspecified; only real tokens are written to the
// cache. Build one layout per forward and share it across layers (it holds the mask).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "models/kv_cache.h"
#include "models/layers.h"
#include "models/model_config.h"

namespace tlt::models {

struct BatchLayout {
  // `slots` empty: no cache. Sizes of the vectors must agree; 1 <= num_tokens[b] <= padded.
  static BatchLayout Make(const std::vector<int64_t>& start, const std::vector<int64_t>& num_tokens,
                          int64_t padded_length, const std::vector<int64_t>& slots,
                          torch::Device device);
  // B full rows of `length` tokens from position 0, no cache (training, scoring).
  static BatchLayout Dense(int64_t batch, int64_t length, torch::Device device);

  int64_t batch_size = 0;
  int64_t padded_length = 0;   // T
  int64_t context_length = 0;  // K: keys per row (max start + num_tokens with a cache, else T)
  bool uses_cache = false;
  std::vector<int64_t> start, num_tokens, slot_ids;  // host copies
  torch::Tensor positions;                           // [B, T] int64
  torch::Tensor mask;        // [B, 1, T, K] bool: true where attention is allowed
  torch::Tensor slots;       // [B] int64 (with a cache)
  torch::Tensor valid_rows;  // [N] int64: row of each real token
  torch::Tensor valid_cols;  // [N] int64: column of each real token
  torch::Tensor last_cols;   // [B] int64: num_tokens - 1
  // Optional [B, T] int64: rotary positions when they differ from the cache columns in
  // `positions` (tree verification: siblings share a depth). Undefined: `positions`.
  torch::Tensor rotary_positions;
};

// q/k/v/o projections (bias on q/k/v iff config.attention_bias, on o iff config.o_proj_bias),
// rotary, causal softmax
// attention in float32, GQA by sharing each kv head with num_heads / num_kv_heads query heads.
class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& config);
  // x [B, T, hidden]; cos/sin [B, T, head_dim]; `cache` may be null (then layout has no slots).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const BatchLayout& layout, KvCache* cache, int64_t layer);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t num_heads_, num_kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

}  // namespace tlt::models
