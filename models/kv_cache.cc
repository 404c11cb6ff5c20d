#include "models/kv_cache.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
// With a CUDA LibTorch, Release() also hands the cached blocks back to the device (other
// processes see the memory free). Without the header the memory stays in the caching allocator,
// where tensors of this process (drafter training on the same GPU) reuse it anyway.
#if defined(TLT_MODELS_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && \
    __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define TLT_MODELS_EMPTY_CUDA_CACHE 1
#endif

namespace tlt::models {

KvCacheOptions KvCacheOptions::ForModel(const ModelConfig& config, int64_t max_slots,
                                        int64_t max_length, torch::Dtype dtype,
                                        torch::Device device) {
  KvCacheOptions o;
  o.num_layers = config.num_hidden_layers;
  o.num_kv_heads = config.num_key_value_heads;
  o.head_dim = config.head_dim;
  o.max_slots = max_slots;
  o.max_length = max_length;
  o.dtype = dtype;
  o.device = device;
  return o;
}

int64_t KvCacheOptions::BytesPerSlot() const {
  return 2 * num_layers * max_length * num_kv_heads * head_dim *
         static_cast<int64_t>(c10::elementSize(dtype));
}

int64_t KvCacheOptions::Bytes() const { return max_slots * BytesPerSlot(); }

int64_t KvCacheOptions::SlotsForBudget(int64_t budget_bytes) const {
  const int64_t per_slot = BytesPerSlot();
  return per_slot <= 0 ? 0 : budget_bytes / per_slot;
}

KvCache::KvCache(const KvCacheOptions& options)
    : options_(options), allocated_(options.max_slots, false), lengths_(options.max_slots, 0) {
  released_ = true;
  CHECK_OK(Recreate());
}

Result<int64_t> KvCache::AllocateSlot() {
  if (released_) return Unavailable("KV cache is released");
  for (int64_t s = 0; s < options_.max_slots; ++s) {
    if (!allocated_[s]) {
      allocated_[s] = true;
      lengths_[s] = 0;
      return s;
    }
  }
  return Unavailable("all " + std::to_string(options_.max_slots) + " KV-cache slots are in use");
}

Status KvCache::FreeSlot(int64_t slot) {
  if (!is_allocated(slot))
    return InvalidArgument("KV-cache slot " + std::to_string(slot) + " is not allocated");
  allocated_[slot] = false;
  lengths_[slot] = 0;
  return Status::OK();
}

bool KvCache::is_allocated(int64_t slot) const {
  return slot >= 0 && slot < options_.max_slots && allocated_[slot];
}

int64_t KvCache::num_free_slots() const {
  if (released_) return 0;
  return static_cast<int64_t>(std::count(allocated_.begin(), allocated_.end(), false));
}

Status KvCache::SetLength(int64_t slot, int64_t length) {
  if (!is_allocated(slot))
    return InvalidArgument("KV-cache slot " + std::to_string(slot) + " is not allocated");
  if (length < 0 || length > options_.max_length) {
    return InvalidArgument("KV-cache length " + std::to_string(length) + " outside [0, " +
                           std::to_string(options_.max_length) + "]");
  }
  lengths_[slot] = length;
  return Status::OK();
}

void KvCache::Release() {
  storage_ = torch::Tensor();
  for (auto& t : keys_) t = torch::Tensor();
  for (auto& t : values_) t = torch::Tensor();
  std::fill(allocated_.begin(), allocated_.end(), false);
  std::fill(lengths_.begin(), lengths_.end(), 0);
  released_ = true;
#ifdef TLT_MODELS_EMPTY_CUDA_CACHE
  if (options_.device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

Status KvCache::Recreate() {
  if (!released_) return Status::OK();
  try {
    auto opts = torch::TensorOptions().dtype(options_.dtype).device(options_.device);
    storage_ = torch::zeros({2, options_.num_layers, options_.max_slots, options_.max_length,
                             options_.num_kv_heads, options_.head_dim},
                            opts);
    keys_.resize(options_.num_layers);
    values_.resize(options_.num_layers);
    for (int64_t l = 0; l < options_.num_layers; ++l) {
      keys_[l] = storage_[0][l];
      values_[l] = storage_[1][l];
    }
  } catch (const c10::Error& e) {
    storage_ = torch::Tensor();
    for (auto& t : keys_) t = torch::Tensor();
    for (auto& t : values_) t = torch::Tensor();
    return Unavailable(std::string("allocating the KV cache: ") + e.what_without_backtrace());
  }
  released_ = false;
  return Status::OK();
}

Status KvCache::CopyPositions(int64_t slot, const std::vector<int64_t>& src,
                              const std::vector<int64_t>& dst) {
  return CopyPositions(std::vector<int64_t>(src.size(), slot), src, dst);
}

Status KvCache::CopyPositions(const std::vector<int64_t>& slots, const std::vector<int64_t>& src,
                              const std::vector<int64_t>& dst) {
  if (released_) return Unavailable("KvCache::CopyPositions: the cache is released");
  if (src.size() != dst.size() || slots.size() != src.size()) {
    return InvalidArgument("KvCache::CopyPositions: slots, src and dst differ in size");
  }
  std::vector<int64_t> index[3];  // slots, from, to: the pairs that move
  for (size_t i = 0; i < src.size(); ++i) {
    if (!is_allocated(slots[i])) {
      return InvalidArgument("KvCache::CopyPositions: slot " + std::to_string(slots[i]) +
                             " not allocated");
    }
    for (int64_t p : {src[i], dst[i]}) {
      if (p < 0 || p >= options_.max_length) {
        return InvalidArgument("KvCache::CopyPositions: position " + std::to_string(p) +
                               " outside [0, " + std::to_string(options_.max_length) + ")");
      }
    }
    if (src[i] == dst[i]) continue;
    index[0].push_back(slots[i]);
    index[1].push_back(src[i]);
    index[2].push_back(dst[i]);
  }
  const int64_t n = static_cast<int64_t>(index[0].size());
  if (n == 0) return Status::OK();
  // Positions as rows of [2 * layers, slots * max_length, kv heads * head dim]: one gather of
  // every moving row before one scatter (a pair may read a position another pair writes).
  const int64_t T = options_.max_length;
  std::vector<int64_t> rows_index(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    rows_index[i] = index[0][i] * T + index[1][i];
    rows_index[n + i] = index[0][i] * T + index[2][i];
  }
  const torch::Tensor t = torch::tensor(rows_index, torch::kInt64).to(options_.device);  // one copy
  const torch::Tensor flat = storage_.view({storage_.size(0) * storage_.size(1),
                                            storage_.size(2) * T, -1});
  flat.index_copy_(1, t.narrow(0, n, n), flat.index_select(1, t.narrow(0, 0, n)));
  return Status::OK();
}

}  // namespace tlt::models
