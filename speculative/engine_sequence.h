// Internal to SpeculativeEngine (speculative_engine.cc, speculative_decode.cc): the state of one
// request. Not a public header.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "models/engine.h"
#include "models/sampling.h"
#include "speculative/speculative_engine.h"

namespace tlt::speculative {

struct SpeculativeEngine::Sequence {
  models::RequestId id = 0;
  models::Request request;
  models::FinishCallback on_finish;
  models::RequestResult result;
  std::vector<int64_t> context;  // prompt + generated; the newest (the root) is not in the cache
  int64_t target_slot = -1, drafter_slot = -1;
  uint64_t counter = 0;  // uniforms used on kVerifyStream / kDraftStream
  // Drafter pairs not fed yet: tokens x_{t+1} and, in chunks, the target hidden states h_t
  // (together as many rows as pending_tokens). Chunks reference rows of the step's own tensor,
  // so recording a plain step's pairs costs no tensor operation.
  struct HiddenRows {
    torch::Tensor source;  // [n, H] on the device
    int64_t row = 0, count = 0;
  };
  std::vector<int64_t> pending_tokens;
  std::vector<HiddenRows> pending_hidden;
  bool finished = false;
  std::vector<torch::Tensor> draft_probs;  // sampled drafts: the distribution of each draft
};

inline models::SamplingParams ParamsOf(const models::Request& r) {
  return {r.temperature, r.top_k, r.top_p};
}

}  // namespace tlt::speculative
