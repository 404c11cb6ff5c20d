// KvCache: the keys and values of every running request, in fixed slots.
//
// The cache holds, per layer, one key and one value tensor of shape
// [max_slots, max_length, num_kv_heads, head_dim]. A request owns one slot from AllocateSlot()
// to FreeSlot(); `length(slot)` is how many of its positions hold valid entries. The transformer
// writes new entries (Transformer::Forward) and the caller then commits them with SetLength();
// SetLength() to a shorter length rolls back (speculative decoding drops rejected tokens).
// The memory is max_slots x max_length, fixed at creation: no allocation while decoding.
//
// Release() frees the tensors (an idle GPU lends that memory to drafter training); every slot
// becomes free and all contents are lost. Recreate() allocates them again, zeroed, with the same
// options. While released, AllocateSlot() fails with kUnavailable.
//
// Not thread-safe: one engine owns a cache and calls it from one thread.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "models/model_config.h"
#include "runtime/status.h"

namespace tlt::models {

struct KvCacheOptions {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_slots = 8;      // requests in flight at once
  int64_t max_length = 2048;  // positions per request (prompt + generated)
  torch::Dtype dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;

  // Shapes taken from `config`.
  static KvCacheOptions ForModel(const ModelConfig& config, int64_t max_slots, int64_t max_length,
                                 torch::Dtype dtype, torch::Device device);
  // Bytes of all key and value tensors, and of one slot's.
  int64_t Bytes() const;
  int64_t BytesPerSlot() const;
  // The largest max_slots (at this max_length) whose cache fits in `budget_bytes`; 0 if none.
  int64_t SlotsForBudget(int64_t budget_bytes) const;
};

class KvCache {
 public:
  // Allocates the tensors (zeroed) on options.device.
  explicit KvCache(const KvCacheOptions& options);

  const KvCacheOptions& options() const { return options_; }
  // A free slot; kUnavailable if all are taken or the cache is released.
  Result<int64_t> AllocateSlot();
  // Returns the slot to the free list; kInvalidArgument if it is not allocated.
  Status FreeSlot(int64_t slot);
  bool is_allocated(int64_t slot) const;
  int64_t num_free_slots() const;
  // Valid positions of an allocated slot.
  int64_t length(int64_t slot) const { return lengths_.at(slot); }
  // Commits (or rolls back to) `length` positions; kInvalidArgument beyond max_length.
  Status SetLength(int64_t slot, int64_t length);

  // [max_slots, max_length, num_kv_heads, head_dim] of layer 0 <= layer < num_layers;
  // undefined tensors while released.
  torch::Tensor& keys(int64_t layer) { return keys_[layer]; }
  torch::Tensor& values(int64_t layer) { return values_[layer]; }
  // Copies the keys and values at positions src[i] of `slot` to dst[i], in every layer, with one
  // gather and one scatter on the device (all reads happen before the writes). Speculative
  // decoding uses it to move an accepted tree path to consecutive positions.
  Status CopyPositions(int64_t slot, const std::vector<int64_t>& src,
                       const std::vector<int64_t>& dst);
  // The same for many slots at once: pair i copies (slots[i], src[i]) to (slots[i], dst[i]).
  Status CopyPositions(const std::vector<int64_t>& slots, const std::vector<int64_t>& src,
                       const std::vector<int64_t>& dst);

  // Frees the memory (on CUDA also returns it from the caching allocator to the device).
  void Release();
  // Allocates again after Release(); no-op if not released.
  Status Recreate();
  bool released() const { return released_; }

 private:
  KvCacheOptions options_;
  // [2 (keys, values), num_layers, max_slots, max_length, num_kv_heads, head_dim]: one
  // allocation; keys_/values_ are views of it.
  torch::Tensor storage_;
  std::vector<torch::Tensor> keys_;
  std::vector<torch::Tensor> values_;
  std::vector<bool> allocated_;
  std::vector<int64_t> lengths_;
  bool released_ = false;
};

}  // namespace tlt::models
