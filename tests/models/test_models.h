// Tiny model configs and a float64 reference forward shared by the models/ tests.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <string>

#include "models/model_config.h"
#include "models/transformer.h"

namespace tlt::models::testing {

inline ModelConfig TinyConfig(const std::string& type, int64_t heads, int64_t kv_heads, bool tied,
                              double theta = 10000.0, int64_t vocab = 61,
                              bool llama_attention_bias = false) {
  ModelConfig c;
  c.model_type = type;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = 32 / heads;
  c.vocab_size = vocab;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = theta;
  c.tie_word_embeddings = tied;
  c.attention_bias = (type == "qwen2") || llama_attention_bias;
  c.o_proj_bias = type == "llama" && llama_attention_bias;
  c.eos_token_ids = {1};
  return c;
}

// Float64 reference implementation, written from the HF formulas with plain tensor math on the
// parameters (independent of the module code). tokens [T] -> logits [T, V] (float64).
inline torch::Tensor ReferenceLogits(Transformer& model, const torch::Tensor& tokens) {
  const ModelConfig& c = model->config();
  auto params = model->NamedTensors();
  auto P = [&](const std::string& n) { return params.at(n).detach().to(torch::kFloat64).cpu(); };
  const int64_t T = tokens.size(0), D = c.head_dim, H = c.num_attention_heads;
  const int64_t G = H / c.num_key_value_heads;
  auto rms = [&](const torch::Tensor& x, const torch::Tensor& w) {
    return w * x / torch::sqrt(x.pow(2).mean(-1, true) + c.rms_norm_eps);
  };
  // Rotation of pair (i, i + D/2) by angle pos * theta^(-2i/D).
  auto rope = [&](const torch::Tensor& x) {  // x [T, heads, D]
    torch::Tensor out = x.clone();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < D / 2; ++i) {
        double angle = t * std::pow(c.rope_theta, -2.0 * i / D);
        torch::Tensor a = x.select(0, t).select(-1, i), b = x.select(0, t).select(-1, i + D / 2);
        out.select(0, t).select(-1, i).copy_(a * std::cos(angle) - b * std::sin(angle));
        out.select(0, t).select(-1, i + D / 2).copy_(b * std::cos(angle) + a * std::sin(angle));
      }
    }
    return out;
  };
  torch::Tensor h = P("model.embed_tokens.weight").index_select(0, tokens.cpu());
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    torch::Tensor x = rms(h, P(p + "input_layernorm.weight"));
    auto proj = [&](const std::string& n) {
      torch::Tensor y = torch::matmul(x, P(p + "self_attn." + n + ".weight").t());
      if (c.attention_bias) y = y + P(p + "self_attn." + n + ".bias");
      return y;
    };
    torch::Tensor q = rope(proj("q_proj").view({T, H, D}));
    torch::Tensor k = rope(proj("k_proj").view({T, c.num_key_value_heads, D}));
    torch::Tensor v = proj("v_proj").view({T, c.num_key_value_heads, D});
    torch::Tensor attn = torch::zeros({T, H, D}, torch::kFloat64);
    for (int64_t head = 0; head < H; ++head) {
      for (int64_t t = 0; t < T; ++t) {
        torch::Tensor qs = q.select(0, t).select(0, head);             // [D]
        torch::Tensor ks = k.narrow(0, 0, t + 1).select(1, head / G);  // [t+1, D]
        torch::Tensor vs = v.narrow(0, 0, t + 1).select(1, head / G);
        torch::Tensor w = torch::softmax(torch::matmul(ks, qs) / std::sqrt(double(D)), 0);
        attn.select(0, t).select(0, head).copy_(torch::matmul(w, vs));
      }
    }
    torch::Tensor o = torch::matmul(attn.reshape({T, H * D}), P(p + "self_attn.o_proj.weight").t());
    if (c.o_proj_bias) o = o + P(p + "self_attn.o_proj.bias");
    h = h + o;
    x = rms(h, P(p + "post_attention_layernorm.weight"));
    torch::Tensor gate = torch::matmul(x, P(p + "mlp.gate_proj.weight").t());
    torch::Tensor up = torch::matmul(x, P(p + "mlp.up_proj.weight").t());
    torch::Tensor act = gate / (1 + torch::exp(-gate)) * up;
    h = h + torch::matmul(act, P(p + "mlp.down_proj.weight").t());
  }
  h = rms(h, P("model.norm.weight"));
  torch::Tensor head = c.tie_word_embeddings ? P("model.embed_tokens.weight") : P("lm_head.weight");
  return torch::matmul(h, head.t());
}

// Makes biases and norm weights non-trivial so the test exercises them.
inline void PerturbParameters(Transformer& model, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard g;
  for (auto& p : model->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
    if (p.key().find(".bias") != std::string::npos) p.value().normal_(0, 0.1);
    if (p.key().find("embed") != std::string::npos) p.value().normal_(0, 1.0);
  }
}

inline double MaxRelError(const torch::Tensor& got, const torch::Tensor& want) {
  torch::Tensor w = want.to(torch::kFloat64).cpu();
  torch::Tensor g = got.to(torch::kFloat64).cpu();
  return ((g - w).abs().max() / w.abs().max().clamp_min(1e-12)).item<double>();
}

}  // namespace tlt::models::testing
