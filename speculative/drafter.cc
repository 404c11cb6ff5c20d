#include "speculative/drafter.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>

#include "models/layers.h"

namespace tlt::speculative {

models::ModelConfig DrafterConfig(const models::ModelConfig& target) {
  models::ModelConfig c = target;
  c.num_hidden_layers = 1;
  return c;
}

DrafterImpl::DrafterImpl(const models::ModelConfig& target_config, uint64_t seed)
    : config_(DrafterConfig(target_config)) {
  const int64_t H = config_.hidden_size;
  fc = register_module("fc", torch::nn::Linear(torch::nn::LinearOptions(2 * H, H).bias(true)));
  layers = register_module("layers", torch::nn::ModuleList());
  layers->push_back(models::DecoderLayer(config_));
  at::Generator gen = at::detail::createCPUGenerator(seed);
  models::InitializeParameters(*this, &gen);
}

torch::Tensor DrafterImpl::Forward(models::Transformer& target, const torch::Tensor& tokens,
                                   const torch::Tensor& hidden, const models::BatchLayout& layout,
                                   models::KvCache* cache, const torch::Tensor& rotary_positions) {
  torch::Tensor embedded = target->model->embed_tokens(tokens).detach();
  const torch::Tensor& w = fc->weight;
  torch::Tensor x = fc(torch::cat({embedded.to(w.scalar_type()), hidden.to(w.scalar_type())}, -1));
  models::RotaryEmbedding rotary(config_.head_dim, config_.rope_theta);
  auto cos_sin = rotary.CosSin(rotary_positions.defined() ? rotary_positions : layout.positions,
                               x.scalar_type());
  return layers[0]->as<models::DecoderLayer>()->forward(x, cos_sin.first, cos_sin.second, layout,
                                                        cache, 0);
}

torch::Tensor DrafterImpl::Logits(models::Transformer& target, const torch::Tensor& hidden) {
  const torch::Tensor& head =
      target->lm_head ? target->lm_head->weight : target->model->embed_tokens->weight;
  return torch::matmul(hidden.to(head.scalar_type()), head.detach().t()).to(torch::kFloat32);
}

Status DrafterImpl::CheckFits(const models::ModelConfig& target) const {
  auto field = [&](const char* name, int64_t mine, int64_t theirs) -> Status {
    if (mine == theirs) return Status::OK();
    return InvalidArgument(std::string("drafter does not fit the target: ") + name + " is " +
                           std::to_string(mine) + " in the drafter but " + std::to_string(theirs) +
                           " in the target");
  };
  RETURN_NOT_OK(field("hidden_size", config_.hidden_size, target.hidden_size));
  RETURN_NOT_OK(field("vocab_size", config_.vocab_size, target.vocab_size));
  RETURN_NOT_OK(field("num_attention_heads", config_.num_attention_heads,
                      target.num_attention_heads));
  RETURN_NOT_OK(field("num_key_value_heads", config_.num_key_value_heads,
                      target.num_key_value_heads));
  RETURN_NOT_OK(field("head_dim", config_.head_dim, target.head_dim));
  return Status::OK();
}

models::KvCacheOptions DrafterImpl::CacheOptions(int64_t max_slots, int64_t max_length,
                                                 torch::Dtype dtype, torch::Device device) const {
  return models::KvCacheOptions::ForModel(config_, max_slots, max_length, dtype, device);
}

models::TensorMap DrafterImpl::NamedTensors() const {
  models::TensorMap out;
  for (const auto& p : named_parameters()) out[p.key()] = p.value();
  return out;
}

Status DrafterImpl::LoadTensors(const models::CheckpointTensors& tensors) {
  models::ShapeMap expected;
  for (const auto& p : named_parameters()) expected[p.key()] = p.value().sizes().vec();
  RETURN_NOT_OK(models::CheckTensorShapes(tensors, expected));
  torch::NoGradGuard no_grad;
  try {
    for (auto& p : named_parameters()) p.value().copy_(tensors.tensors.at(p.key()));
  } catch (const c10::Error& e) {
    return Internal(std::string("copying drafter weights: ") + e.what_without_backtrace());
  }
  return Status::OK();
}

Drafter InitDrafter(models::Transformer& target, uint64_t seed) {
  Drafter d(target->config(), seed);
  const torch::Tensor& w = target->model->embed_tokens->weight;
  d->to(w.device(), w.scalar_type());
  return d;
}

Status SaveDrafter(Drafter& drafter, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("creating " + dir + ": " + ec.message());
  models::ModelConfig config = drafter->config();
  config.torch_dtype = models::DtypeName(drafter->fc->weight.scalar_type());
  RETURN_NOT_OK(models::WriteCheckpointTensors(dir, drafter->NamedTensors()));
  return models::WriteModelConfig(config, (fs::path(dir) / "config.json").string());
}

Result<Drafter> LoadDrafter(const std::string& dir, models::Transformer& target) {
  namespace fs = std::filesystem;
  ASSIGN_OR_RETURN(models::ModelConfig config,
                   models::ReadModelConfig((fs::path(dir) / "config.json").string()));
  if (config.num_hidden_layers != 1) {
    return InvalidArgument("drafter checkpoint " + dir + " has " +
                           std::to_string(config.num_hidden_layers) + " layers; expected 1");
  }
  try {
    Drafter d(config, /*seed=*/0);
    RETURN_NOT_OK(d->CheckFits(target->config()).WithContext("loading drafter " + dir));
    ASSIGN_OR_RETURN(models::CheckpointTensors tensors, models::ReadCheckpointTensors(dir));
    const torch::Tensor& w = target->model->embed_tokens->weight;
    d->to(w.device(), w.scalar_type());
    RETURN_NOT_OK(d->LoadTensors(tensors).WithContext("loading drafter " + dir));
    return d;
  } catch (const c10::Error& e) {
    return Internal("loading drafter " + dir + ": " + e.what_without_backtrace());
  }
}

models::DecoderWeights DrafterDecoderWeights(models::Transformer target, Drafter drafter) {
  models::DecoderWeights w;
  w.config = drafter->config();
  w.embed = target->model->embed_tokens->weight;
  w.input_fc_weight = drafter->fc->weight;
  w.input_fc_bias = drafter->fc->bias;
  w.layers = {drafter->layers->ptr<models::DecoderLayerImpl>(0)};
  w.head = target->lm_head ? target->lm_head->weight : w.embed;
  return w;
}

}  // namespace tlt::speculative
