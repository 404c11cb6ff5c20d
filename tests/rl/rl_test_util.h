// Tiny models and helpers shared by the rl/ tests.
#pragma once

#include <torch/torch.h>

#include "models/model_config.h"
#include "models/transformer.h"

namespace tlt::rl::testing {

inline models::ModelConfig TinyConfig(int64_t vocab, int64_t hidden = 32, int64_t layers = 2) {
  models::ModelConfig c;
  c.model_type = "qwen2";
  c.hidden_size = hidden;
  c.intermediate_size = hidden * 2;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = hidden / 4;
  c.vocab_size = vocab;
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  c.max_position_embeddings = 256;
  c.eos_token_ids = {1};
  return c;
}

inline models::Transformer TinyModel(const models::ModelConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  return models::Transformer(c);
}

inline torch::Tensor FlatWeights(models::Transformer& m) {
  std::vector<torch::Tensor> parts;
  for (auto& p : m->parameters()) parts.push_back(p.detach().flatten().clone());
  return torch::cat(parts);
}

}  // namespace tlt::rl::testing
