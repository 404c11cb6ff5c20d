// The weights a CudaDecoder's kernels read (see cuda_decoder_weights.h).
#include "models/cuda_decoder_weights.h"

#include "gpu/decode_kernels.h"
#include "models/layers.h"

namespace tlt::models {

int KernelDtype(torch::Dtype dtype) {
  if (dtype == torch::kBFloat16) return kTltBFloat16;
  if (dtype == torch::kFloat16) return kTltFloat16;
  return kTltFloat32;
}

std::string PlacementProblem(const DecoderWeights& w, const KvCacheOptions& c) {
  std::vector<torch::Tensor> tensors = {w.embed, w.head, w.final_norm, w.input_fc_weight,
                                        w.input_fc_bias};
  for (const auto& layer : w.layers) {
    for (const auto& p : layer->parameters()) tensors.push_back(p);
  }
  for (const torch::Tensor& p : tensors) {
    if (!p.defined()) continue;
    const bool same_device =
        p.device().is_cuda() && (!c.device.has_index() || p.device().index() == c.device.index());
    if (!same_device || p.scalar_type() != c.dtype) {
      return "parameters not on the cache's device/dtype (found " + p.device().str() + " " +
             std::string(c10::toString(p.scalar_type())) + ", cache " + c.device.str() + " " +
             std::string(c10::toString(c.dtype)) + ")";
    }
  }
  return "";
}

DecoderWeights WeightsOf(Transformer& model) {
  DecoderWeights w;
  w.config = model->config();
  auto& body = model->model;
  w.embed = body->embed_tokens->weight;
  for (size_t i = 0; i < body->layers->size(); ++i) {
    w.layers.push_back(body->layers->ptr<DecoderLayerImpl>(i));
  }
  w.final_norm = body->norm->weight;
  w.head = model->lm_head ? model->lm_head->weight : w.embed;
  return w;
}

void ConcatenatedWeight::Build(std::vector<torch::Tensor> p) {
  parts = std::move(p);
  dest = torch::cat(parts, 0).contiguous();
  versions.clear();
  pointers.clear();
  for (const auto& t : parts) {
    versions.push_back(t._version());
    pointers.push_back(t.data_ptr());
  }
}

bool ConcatenatedWeight::Refresh() {
  int64_t offset = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const int64_t n = parts[i].size(0);
    if (parts[i].data_ptr() != pointers[i]) return false;
    if (parts[i]._version() != versions[i]) {
      dest.narrow(0, offset, n).copy_(parts[i]);
      versions[i] = parts[i]._version();
    }
    offset += n;
  }
  return true;
}

void DecoderWeightSet::Build(const DecoderWeights& w, const ModelConfig& config,
                             const KvCacheOptions& cache) {
  torch::NoGradGuard no_grad;
  embed = w.embed;
  final_norm = w.final_norm;
  head = w.head;
  fc_w = w.input_fc_weight;
  fc_b = w.input_fc_bias;
  watched_.clear();
  for (const torch::Tensor& t : {embed, final_norm, head, fc_w, fc_b}) {
    if (t.defined()) watched_.push_back(t);
  }
  layers.clear();
  for (const auto& layer : w.layers) {
    LayerWeights L;
    L.in_norm = layer->input_layernorm->weight;
    L.post_norm = layer->post_attention_layernorm->weight;
    auto& a = layer->self_attn;
    L.qkv_w.Build({a->q_proj->weight, a->k_proj->weight, a->v_proj->weight});
    if (a->q_proj->bias.defined()) {
      L.qkv_b.Build({a->q_proj->bias, a->k_proj->bias, a->v_proj->bias});
    }
    L.o_w = a->o_proj->weight;
    L.o_b = a->o_proj->bias;
    L.gate_up_w.Build({layer->mlp->gate_proj->weight, layer->mlp->up_proj->weight});
    L.down_w = layer->mlp->down_proj->weight;
    for (const torch::Tensor& t : {L.in_norm, L.post_norm, L.o_w, L.down_w}) {
      watched_.push_back(t);
    }
    if (L.o_b.defined()) watched_.push_back(L.o_b);
    layers.push_back(std::move(L));
  }
  watched_pointers_.clear();
  for (const auto& t : watched_) watched_pointers_.push_back(t.data_ptr());
  RotaryEmbedding rotary(config.head_dim, config.rope_theta);
  torch::Tensor positions = torch::arange(
      cache.max_length, torch::TensorOptions().dtype(torch::kInt64).device(cache.device));
  auto [c, s] = rotary.CosSin(positions, cache.dtype);
  cos = c.contiguous();
  sin = s.contiguous();
}

bool DecoderWeightSet::Refresh() {
  for (size_t i = 0; i < watched_.size(); ++i) {
    if (watched_[i].data_ptr() != watched_pointers_[i]) return false;
  }
  torch::NoGradGuard no_grad;
  for (LayerWeights& L : layers) {
    if (!L.qkv_w.Refresh() || (L.qkv_b.dest.defined() && !L.qkv_b.Refresh()) ||
        !L.gate_up_w.Refresh()) {
      return false;
    }
  }
  return true;
}

}  // namespace tlt::models
