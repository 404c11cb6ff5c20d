// SpeculativeEngine: generation with a target Transformer and an EAGLE-style Drafter.
//
// Each step drafts a tree (or chain) per running request with the configured Strategy (see
// strategy.h), verifies all trees in one batched target forward with tree attention, and keeps
// for each request the accepted path plus one token sampled from the target (verify.h), so the
// output has exactly the distribution of plain sampling with the same temperature/top-k/top-p;
// with temperature 0 it is token for token the plain greedy output.
//
// KV caches: the target cache of a request holds every token but the newest (the "root" of the
// next tree); after verification the accepted nodes' keys/values are compacted to consecutive
// positions and the length is committed, so rejected nodes vanish. The drafter cache holds the
// drafter's pairs (x_{t+1}, h_t) up to the root; tree nodes drafted beyond it are rolled back
// with KvCache::SetLength and the accepted tokens are re-fed with the target's true hidden
// states at the next step.
//
// Randomness per request: the first token is models::Sample with counter 0 (the same token the
// plain models::Engine draws first); verification then uses CounterUniform(seed, c,
// kVerifyStream) (sampled drafts: kDraftStream) with c counting up from 0, so a request's
// output depends only on its seed and its own logits, never on the batch.
//
// Requests run in groups of up to max_batch_size (all prefilled, then stepped until all finish).
// Not thread-safe: one owner calls it from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "models/engine.h"
#include "models/kv_cache.h"
#include "models/transformer.h"
#include "runtime/status.h"
#include "speculative/drafter.h"
#include "speculative/strategy.h"

namespace tlt::speculative {

struct SpeculativeEngineOptions {
  Strategy strategy{8, 4, 16};
  int64_t max_batch_size = 8;
  int64_t max_sequence_length = 512;  // prompt + generated tokens per request
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;
  // Chain strategies only: draft tokens are sampled from the drafter's distribution after the
  // request's temperature/top-k/top-p (uniforms on stream kDraftStream) and verified with
  // VerifySampledChain; otherwise drafts are the drafter's top-k, verified with VerifyTree.
  bool sample_drafts = false;
  // Testing/analysis hook: when set, draft log-probs [V] come from this function of the full
  // token context (prompt, generated tokens, then the tree path) instead of the drafter.
  std::function<torch::Tensor(const std::vector<int64_t>& context)> draft_oracle;
};

struct SpeculativeStats {
  int64_t steps = 0;            // request-steps (one tree verified for one request)
  int64_t draft_tokens = 0;     // draft tokens verified
  int64_t accepted_tokens = 0;  // draft tokens accepted
  // Tokens gained per request-step (accepted + 1): the "accept length".
  double mean_accept_length() const {
    return steps == 0 ? 0.0 : static_cast<double>(accepted_tokens + steps) / steps;
  }
};

class SpeculativeEngine {
 public:
  // Moves target and drafter to options.device/dtype; fails if the drafter does not fit.
  static Result<std::unique_ptr<SpeculativeEngine>> Create(models::Transformer target,
                                                           Drafter drafter,
                                                           const SpeculativeEngineOptions& options);

  // Generates every request; results in the order of `requests` (hidden states not returned).
  Result<std::vector<models::RequestResult>> Generate(const std::vector<models::Request>& requests);

  void set_strategy(const Strategy& strategy) { options_.strategy = strategy; }
  const SpeculativeStats& stats() const { return stats_; }
  void ResetStats() { stats_ = {}; }

 private:
  struct Sequence;
  SpeculativeEngine(models::Transformer target, Drafter drafter,
                    const SpeculativeEngineOptions& options);
  Status Prefill(Sequence* seq);
  DraftTree Draft(Sequence* seq);
  DraftTree SampleChain(Sequence* seq, const torch::Tensor& root_logprobs, const ExpandFn& expand);
  Status Step(std::vector<Sequence*>& running);

  models::Transformer target_;
  Drafter drafter_;
  SpeculativeEngineOptions options_;
  std::unique_ptr<models::KvCache> target_cache_, drafter_cache_;
  SpeculativeStats stats_;
};

}  // namespace tlt::speculative
