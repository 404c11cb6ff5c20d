// The weights a CudaDecoder's kernels read (internal to models/cuda_decoder.cc; CUDA builds only).
//
// DecoderWeightSet collects the parameters of a DecoderWeights (which stay owned by the model)
// and adds what the kernels want besides: q/k/v and gate/up concatenated along dim 0, and the
// rotary cos/sin tables for every cache position. Refresh() keeps the concatenations equal to
// their parts after in-place loads (LoadWeights) by watching each part's version counter; a
// parameter that moved to new storage makes Refresh() return false, and the owner rebuilds
// (after PlacementProblem() has checked the new placement).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/cuda_decoder.h"
#include "models/kv_cache.h"
#include "models/transformer.h"

namespace tlt::models {

// The gpu/ kernels' element-type code (TltDtype) of a torch dtype.
int KernelDtype(torch::Dtype dtype);

// Empty when every parameter of `w` is on the cache's CUDA device in its dtype; else what is
// wrong, naming the device and dtype found.
std::string PlacementProblem(const DecoderWeights& w, const KvCacheOptions& cache);

// The DecoderWeights view of a Transformer (tied head: the embedding).
DecoderWeights WeightsOf(Transformer& model);

// A concatenation of parameters along dim 0, refreshed in place when a part changes.
struct ConcatenatedWeight {
  torch::Tensor dest;
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> versions;
  std::vector<const void*> pointers;

  void Build(std::vector<torch::Tensor> p);
  // False when a part moved to new storage (the caller rebuilds).
  bool Refresh();
};

struct LayerWeights {
  torch::Tensor in_norm, post_norm, o_w, o_b, down_w;
  ConcatenatedWeight qkv_w, qkv_b, gate_up_w;  // qkv_b.dest undefined without q/k/v bias
};

class DecoderWeightSet {
 public:
  void Build(const DecoderWeights& w, const ModelConfig& config, const KvCacheOptions& cache);
  // Copies changed parts into the concatenations; false when any parameter moved.
  bool Refresh();

  torch::Tensor embed, final_norm, head, fc_w, fc_b;  // final_norm, fc_*: may be undefined
  torch::Tensor cos, sin;                             // [max_length, head_dim], cache dtype
  std::vector<LayerWeights> layers;

 private:
  std::vector<torch::Tensor> watched_;  // parameters used as they are
  std::vector<const void*> watched_pointers_;
};

}  // namespace tlt::models
