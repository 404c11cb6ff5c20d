// DeviceDraftLoop: the drafter's top-k trees of a batch grown on the GPU, with one copy to the
// host at the end instead of one round trip per depth.
//
// The same trees as SpeculativeEngine's host loop (DraftTreeBuilder, strategy.h), built by the
// kernels of gpu/draft_kernels.h between drafter steps: each depth's drafter rows, its top-k
// (log_softmax over the vocabulary), the cumulative scores, the next frontier, the next rows
// (positions, rotary positions, ancestor masks) and the gather of each row's input hidden state
// stay on the device; the drafter runs through models::CudaDecoder::ForwardDeviceRows (its tree
// graphs). After the last depth the candidates of every request ([B, 3, capacity] float64:
// tokens, parents, scores) come to the host in one copy and PruneCandidates keeps the best
// strategy.num_tokens of each. So the host only queues work during drafting; the device never
// waits for it between depths.
//
// Scores are the draft log-probs of the kernel's log_softmax (float32, computed as LibTorch does
// but summed in another order, then added up in float64), which can differ from LibTorch's by a
// few ulps; candidates within that distance may then rank the other way than in the host loop.
// That changes which drafts are proposed, never what verification outputs. Equal log-probs rank
// the smaller token id first in both paths.
//
// Defined only in builds with the fused CUDA decoder (TLT_SPECULATIVE_DEVICE_DRAFT is then set
// for speculative/; other builds must not call these).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "models/cuda_decoder.h"
#include "runtime/status.h"
#include "speculative/draft_tree.h"
#include "speculative/strategy.h"

namespace tlt::speculative {

struct DeviceDraftRequest {
  int64_t root_token = 0;  // the tree's root (the request's newest token)
  int64_t base = 0;        // drafter cache positions already fed (drafted nodes go after)
  int64_t slot = 0;        // drafter cache slot
};

// Whether DeviceDraftLoop::Draft takes this step: top-k greedy drafting with at least top_k tokens
// in the vocabulary, every depth's rows within the drafter's max_rows, the drafted nodes of a
// request within 64 positions after its base and within the drafter cache's max_length.
bool DeviceDraftFits(const Strategy& strategy, int64_t vocab_size,
                     const std::vector<DeviceDraftRequest>& requests, int64_t drafter_max_rows,
                     int64_t drafter_max_length);

// The loop for one drafter decoder. With graphs, each (batch size, top-k, depth) shape runs
// eagerly once and is then captured, all depths with the drafter's steps
// (CudaDecoder::ForwardDeviceRows records into the capture), as one CUDA graph over static
// buffers: a step is then a few input copies, one replay and the candidates' copy back. The
// graph is recaptured when the drafter's epoch() changes (moved cache or parameters); in-place
// weight loads reach it through CudaDecoder::Refresh(). Not thread-safe (the engine's thread).
class DeviceDraftLoop {
 public:
  DeviceDraftLoop(models::CudaDecoder* drafter, bool use_graphs);
  ~DeviceDraftLoop();

  // root_hidden [B, H] (model dtype) and root_logits float32 [B, V], on the drafter's device:
  // the drafter's prediction at each request's newest fed pair and its draft logits. Writes the
  // drafted nodes into the drafter cache after each base (the caller rolls the lengths back).
  Result<std::vector<DraftTree>> Draft(const Strategy& strategy,
                                       const std::vector<DeviceDraftRequest>& requests,
                                       const torch::Tensor& root_hidden,
                                       const torch::Tensor& root_logits);
  int64_t num_graphs() const;

 private:
  struct Shape;  // static buffers and graph of one (batch size, top-k, depth)
  Status RunLoop(Shape& shape);
  bool Capture(Shape& shape);

  models::CudaDecoder* drafter_;
  bool use_graphs_;
  bool graphs_disabled_ = false;  // a capture failed: eager from then on
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<Shape>> shapes_;
  struct Cuda;  // side stream and graph pool (CUDA types stay out of this header)
  std::unique_ptr<Cuda> cuda_;
};

}  // namespace tlt::speculative
