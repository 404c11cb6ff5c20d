// Implementations of layers.h, attention.h and transformer.h (one translation unit: LibTorch
// TUs are slow to compile).
#include "models/transformer.h"

#include <torch/torch.h>

#include <filesystem>

namespace tlt::models {

namespace F = torch::nn::functional;

// ---- layers.h ----

RMSNormImpl::RMSNormImpl(const RMSNormOptions& options_) : options(options_) { reset(); }

void RMSNormImpl::reset() { weight = register_parameter("weight", torch::ones({options.dim()})); }

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x.to(torch::kFloat32);
  torch::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(variance + options.eps());
  return weight * h.to(x.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::CosSin(const torch::Tensor& positions,
                                                                torch::Dtype dtype) const {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(positions.device());
  torch::Tensor exponent =
      torch::arange(0, head_dim_, 2, f32.dtype(torch::kInt64)).to(torch::kFloat32) /
      static_cast<double>(head_dim_);
  torch::Tensor inv_freq = 1.0 / torch::pow(theta_, exponent);  // float32, as HF
  torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq;
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor RotaryEmbedding::Apply(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(2) + rotated * sin.unsqueeze(2);
}

MlpImpl::MlpImpl(const ModelConfig& c) {
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  gate_proj = register_module("gate_proj", linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(F::silu(gate_proj(x)) * up_proj(x));
}

// ---- attention.h ----

BatchLayout BatchLayout::Make(const std::vector<int64_t>& start,
                              const std::vector<int64_t>& num_tokens, int64_t padded_length,
                              const std::vector<int64_t>& slots, torch::Device device) {
  BatchLayout l;
  l.batch_size = static_cast<int64_t>(start.size());
  l.padded_length = padded_length;
  l.uses_cache = !slots.empty();
  l.start = start;
  l.num_tokens = num_tokens;
  l.slot_ids = slots;
  TORCH_CHECK(num_tokens.size() == start.size(), "BatchLayout: sizes differ");
  TORCH_CHECK(!l.uses_cache || slots.size() == start.size(), "BatchLayout: slots size differs");
  std::vector<int64_t> rows, cols, last;
  int64_t context = 0;
  for (int64_t b = 0; b < l.batch_size; ++b) {
    TORCH_CHECK(num_tokens[b] >= 1 && num_tokens[b] <= padded_length, "BatchLayout: bad count");
    for (int64_t i = 0; i < num_tokens[b]; ++i) {
      rows.push_back(b);
      cols.push_back(i);
    }
    last.push_back(num_tokens[b] - 1);
    context = std::max(context, start[b] + num_tokens[b]);
  }
  l.context_length = l.uses_cache ? context : padded_length;
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto to_dev = [&](const std::vector<int64_t>& v) { return torch::tensor(v, i64).to(device); };
  torch::Tensor start_t = torch::tensor(start, i64);
  torch::Tensor steps = torch::arange(padded_length, i64);
  torch::Tensor positions = start_t.unsqueeze(1) + steps.unsqueeze(0);  // [B, T]
  torch::Tensor keys = torch::arange(l.context_length, i64);            // [K]
  torch::Tensor limit = l.uses_cache ? positions : steps.unsqueeze(0).expand_as(positions);
  torch::Tensor mask = keys.view({1, 1, -1}) <= limit.unsqueeze(-1);  // [B, T, K]
  if (!l.uses_cache) {
    torch::Tensor counts = torch::tensor(num_tokens, i64).view({-1, 1, 1});
    mask = mask & (keys.view({1, 1, -1}) < counts);
  }
  l.positions = positions.to(device);
  l.mask = mask.unsqueeze(1).to(device);
  if (l.uses_cache) l.slots = to_dev(slots);
  l.valid_rows = to_dev(rows);
  l.valid_cols = to_dev(cols);
  l.last_cols = to_dev(last);
  return l;
}

BatchLayout BatchLayout::Dense(int64_t batch, int64_t length, torch::Device device) {
  return Make(std::vector<int64_t>(batch, 0), std::vector<int64_t>(batch, length), length, {},
              device);
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : num_heads_(c.num_attention_heads),
      num_kv_heads_(c.num_key_value_heads),
      head_dim_(c.head_dim) {
  auto linear = [](int64_t in, int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj =
      register_module("q_proj", linear(c.hidden_size, num_heads_ * head_dim_, c.attention_bias));
  k_proj =
      register_module("k_proj", linear(c.hidden_size, num_kv_heads_ * head_dim_, c.attention_bias));
  v_proj =
      register_module("v_proj", linear(c.hidden_size, num_kv_heads_ * head_dim_, c.attention_bias));
  o_proj = register_module("o_proj", linear(num_heads_ * head_dim_, c.hidden_size, c.o_proj_bias));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, const BatchLayout& layout,
                                     KvCache* cache, int64_t layer) {
  const int64_t B = x.size(0), T = x.size(1);
  torch::Tensor q = q_proj(x).view({B, T, num_heads_, head_dim_});
  torch::Tensor k = k_proj(x).view({B, T, num_kv_heads_, head_dim_});
  torch::Tensor v = v_proj(x).view({B, T, num_kv_heads_, head_dim_});
  q = RotaryEmbedding::Apply(q, cos, sin);
  k = RotaryEmbedding::Apply(k, cos, sin);
  if (cache != nullptr) {
    TORCH_CHECK(layout.uses_cache, "Attention: a cache needs a layout with slots");
    torch::Tensor slot_of_token = layout.slots.index_select(0, layout.valid_rows);
    torch::Tensor pos_of_token = layout.positions.index({layout.valid_rows, layout.valid_cols});
    torch::Tensor& kc = cache->keys(layer);
    torch::Tensor& vc = cache->values(layer);
    kc.index_put_({slot_of_token, pos_of_token},
                  k.index({layout.valid_rows, layout.valid_cols}).to(kc.scalar_type()));
    vc.index_put_({slot_of_token, pos_of_token},
                  v.index({layout.valid_rows, layout.valid_cols}).to(vc.scalar_type()));
    k = kc.narrow(1, 0, layout.context_length).index_select(0, layout.slots).to(x.scalar_type());
    v = vc.narrow(1, 0, layout.context_length).index_select(0, layout.slots).to(x.scalar_type());
  }
  const int64_t K = k.size(1);
  const int64_t group = num_heads_ / num_kv_heads_;
  // [B, K, kvH, D] -> [B, H, K, D], kv head j serving query heads j*group .. (j+1)*group - 1.
  auto expand = [&](const torch::Tensor& t) {
    return t.permute({0, 2, 1, 3})
        .unsqueeze(2)
        .expand({B, num_kv_heads_, group, K, head_dim_})
        .reshape({B, num_heads_, K, head_dim_});
  };
  k = expand(k);
  v = expand(v);
  q = q.permute({0, 2, 1, 3});  // [B, H, T, D]
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(head_dim_));
  scores = scores.masked_fill(layout.mask.logical_not(), -std::numeric_limits<double>::infinity());
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  torch::Tensor out = torch::matmul(probs, v).permute({0, 2, 1, 3}).reshape({B, T, -1});
  return o_proj(out);
}

// ---- transformer.h ----

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) {
  input_layernorm = register_module("input_layernorm",
                                    RMSNorm(RMSNormOptions(c.hidden_size).eps(c.rms_norm_eps)));
  self_attn = register_module("self_attn", Attention(c));
  post_attention_layernorm = register_module(
      "post_attention_layernorm", RMSNorm(RMSNormOptions(c.hidden_size).eps(c.rms_norm_eps)));
  mlp = register_module("mlp", Mlp(c));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const BatchLayout& layout,
                                        KvCache* cache, int64_t layer) {
  torch::Tensor h = x + self_attn(input_layernorm(x), cos, sin, layout, cache, layer);
  return h + mlp(post_attention_layernorm(h));
}

TransformerBodyImpl::TransformerBodyImpl(const ModelConfig& c) : rotary_(c.head_dim, c.rope_theta) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c));
  norm = register_module("norm", RMSNorm(RMSNormOptions(c.hidden_size).eps(c.rms_norm_eps)));
}

torch::Tensor TransformerBodyImpl::forward(const torch::Tensor& tokens, const BatchLayout& layout,
                                           KvCache* cache) {
  torch::Tensor h = embed_tokens(tokens);
  auto [cos, sin] = rotary_.CosSin(
      layout.rotary_positions.defined() ? layout.rotary_positions : layout.positions,
      h.scalar_type());
  for (size_t i = 0; i < layers->size(); ++i) {
    h = layers[i]->as<DecoderLayer>()->forward(h, cos, sin, layout, cache, static_cast<int64_t>(i));
  }
  return norm(h);
}

TransformerImpl::TransformerImpl(const ModelConfig& config) : config_(config) {
  model = register_module("model", TransformerBody(config));
  if (!config.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head",
        torch::nn::Linear(
            torch::nn::LinearOptions(config.hidden_size, config.vocab_size).bias(false)));
  }
  InitializeParameters(*this);
}

void InitializeParameters(torch::nn::Module& module, at::Generator* generator) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    const std::string& name = p.key();
    if (name.find("norm") != std::string::npos) {
      p.value().fill_(1.0);
    } else if (name.size() > 5 && name.substr(name.size() - 5) == ".bias") {
      p.value().zero_();
    } else if (generator != nullptr) {
      p.value().normal_(0.0, 0.02, *generator);
    } else {
      p.value().normal_(0.0, 0.02);
    }
  }
}

ForwardOutput TransformerImpl::Forward(const torch::Tensor& tokens, const BatchLayout& layout,
                                       KvCache* cache, const ForwardOptions& options) {
  torch::Tensor hidden = model(tokens, layout, cache);
  ForwardOutput out;
  if (options.return_all_hidden()) out.all_hidden = hidden;
  if (options.last_token_only()) {
    hidden =
        hidden.index({torch::arange(hidden.size(0), layout.last_cols.options()), layout.last_cols});
  }
  const torch::Tensor& head = lm_head ? lm_head->weight : model->embed_tokens->weight;
  out.logits = torch::matmul(hidden, head.t()).to(torch::kFloat32);
  if (options.return_hidden()) out.hidden = hidden;
  return out;
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens) {
  return Forward(tokens, BatchLayout::Dense(tokens.size(0), tokens.size(1), tokens.device()),
                 nullptr)
      .logits;
}

ShapeMap TransformerImpl::ExpectedShapes() const {
  ShapeMap out;
  for (const auto& p : named_parameters()) out[p.key()] = p.value().sizes().vec();
  return out;
}

TensorMap TransformerImpl::NamedTensors() const {
  TensorMap out;
  for (const auto& p : named_parameters()) out[p.key()] = p.value();
  return out;
}

Status TransformerImpl::LoadTensors(const CheckpointTensors& loaded) {
  CheckpointTensors filtered;
  for (const auto& [name, t] : loaded.tensors) {
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // old HF buffers
    if (config_.tie_word_embeddings && name == "lm_head.weight") continue;
    filtered.tensors[name] = t;
    auto f = loaded.files.find(name);
    if (f != loaded.files.end()) filtered.files[name] = f->second;
  }
  RETURN_NOT_OK(CheckTensorShapes(filtered, ExpectedShapes()));
  torch::NoGradGuard no_grad;
  try {
    for (auto& p : named_parameters()) p.value().copy_(filtered.tensors.at(p.key()));
  } catch (const c10::Error& e) {
    return Internal(std::string("copying weights: ") + e.what_without_backtrace());
  }
  return Status::OK();
}

Result<torch::Dtype> DtypeFromName(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  return InvalidArgument("unsupported dtype '" + name + "' (float32, bfloat16, float16)");
}

std::string DtypeName(torch::Dtype dtype) {
  if (dtype == torch::kBFloat16) return "bfloat16";
  if (dtype == torch::kFloat16) return "float16";
  return "float32";
}

Result<Transformer> LoadTransformer(const std::string& dir, torch::Dtype dtype,
                                    torch::Device device) {
  namespace fs = std::filesystem;
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig((fs::path(dir) / "config.json").string()));
  ASSIGN_OR_RETURN(CheckpointTensors tensors, ReadCheckpointTensors(dir));
  try {
    Transformer model(config);
    model->to(device, dtype);
    RETURN_NOT_OK(model->LoadTensors(tensors));
    model->eval();
    return model;
  } catch (const c10::Error& e) {
    return Internal("loading " + dir + ": " + e.what_without_backtrace());
  }
}

Status SaveTransformer(Transformer& model, const std::string& dir, int64_t max_shard_bytes) {
  namespace fs = std::filesystem;
  ModelConfig config = model->config();
  TensorMap tensors = model->NamedTensors();
  if (!tensors.empty()) config.torch_dtype = DtypeName(tensors.begin()->second.scalar_type());
  RETURN_NOT_OK(WriteCheckpointTensors(dir, tensors, max_shard_bytes));
  return WriteModelConfig(config, (fs::path(dir) / "config.json").string());
}

}  // namespace tlt::models
