// SpeculativeEngine: continuous-batching generation with a target Transformer and an
// EAGLE-style Drafter, with speculative decoding (SD) switched on and off per step.
//
// Requests are queued with Submit() and join the running batch between steps, like
// models::Engine: each Step() first prefills the newly admitted requests together (sampling their
// first token with models::Sample, counter 0: the plain engine's first token), then runs one
// decode step for the requests that were already running. A request leaves as soon as it
// finishes (max_new_tokens, a full cache slot, or a stop token, which is kept), its slots are
// freed and its callback fires from inside Step() on the caller's thread (it may Submit(), not
// Step()/Cancel()/RunUntilIdle()).
//
// A decode step is one of two kinds, chosen by a SpeculationSwitch on the decode batch size:
// - SD off: a plain decode of the whole batch (one target forward of the newest tokens, then
//   models::Sample with counter = tokens generated so far, stream 0): exactly models::Engine's
//   decode (with fused_plain_decode, through the same models::CudaDecoder kernels on CUDA). The
//   target's hidden states of those tokens are kept as the drafter's pending pairs.
// - SD on: each request drafts a tree (or chain) with the step's Strategy (the drafter's
//   expansions of all requests at one depth share one drafter forward), all trees are verified in
//   one target forward with tree attention (strategy.h), and each request keeps its accepted path
//   plus one token sampled from the target (verify.h). Before drafting, the drafter is brought up
//   to date with the pending pairs (x_{t+1}, h_t) of every token produced since it last ran, from
//   the target hidden states kept above: switching SD on re-prefills the drafter from the target's
//   own hidden states, without another target forward. Pending pairs are also fed whenever a
//   request has more than max_pending_pairs of them, so their memory stays bounded while SD is off.
// The strategy is fixed (options.strategy) or, with options.adaptive, picked per step by a
// StrategyBandit from the decode batch size, rewarded with accepted length x batch size / step
// time (draft + verify, timed with the device synchronized).
//
// Losslessness: verification uses CounterUniform(seed, c, kVerifyStream) (sampled drafts:
// kDraftStream) with a per-request counter c from 0, plain steps use stream 0 at the token index,
// so no uniform is used twice and every token has exactly the plain sampler's distribution given
// the tokens before it, whatever the mix of plain and SD steps; with temperature 0 the output is
// token for token the plain greedy output (up to floating-point differences between batched
// forwards, as in models::Engine).
//
// KV caches: a request's target cache holds every token but the newest (the root of its next
// tree); accepted tree nodes are compacted to consecutive positions and rejected ones dropped
// (CompactAcceptedPath, KvCache::SetLength). The drafter cache holds the pairs fed so far; tree
// nodes drafted beyond them are rolled back after each draft.
//
// LoadDrafterWeights() swaps the drafter's weights between steps, in place; running requests
// keep the drafter keys/values computed with the old weights (this affects only how many drafts
// are accepted, never the output distribution).
//
// Not thread-safe: one owner calls it from one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/cuda_decoder.h"
#include "models/engine.h"
#include "models/kv_cache.h"
#include "models/transformer.h"
#include "runtime/status.h"
#include "speculative/drafter.h"
#include "speculative/strategy.h"
#include "speculative/strategy_bandit.h"

namespace tlt::speculative {

class DeviceDraftLoop;

struct SpeculativeEngineOptions {
  Strategy strategy{8, 4, 16};        // the fixed strategy (adaptive: unused)
  int64_t max_batch_size = 8;         // cache slots = requests running at once
  int64_t max_sequence_length = 512;  // prompt + generated tokens per request
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;
  // SD is on once the decode batch has been <= sd_batch_threshold for sd_patience consecutive
  // decode steps, off as soon as it is above (SpeculationSwitch). The defaults keep it always on;
  // TLT's release uses 32 and 10.
  int64_t sd_batch_threshold = INT64_MAX;
  int64_t sd_patience = 0;
  // Adaptive: StrategyBandit over adaptive_strategies picks each SD step's strategy; with
  // bandit.plain_arm (on by default here) "no speculation" is an arm too, so that a step where
  // the switch allows SD still decodes plainly where the bandit measured that to be faster.
  bool adaptive = false;
  std::vector<Strategy> adaptive_strategies{{8, 4, 48}, {8, 4, 32}, {8, 4, 16}, {8, 4, 8}};
  StrategyBanditOptions bandit = [] {
    StrategyBanditOptions o;
    o.plain_arm = true;
    return o;
  }();
  // CUDA: SD-off steps run through models::CudaDecoder (the plain engine's fused kernels, CUDA
  // graphs when cuda_graphs) instead of Transformer::Forward; ignored where it is unsupported.
  bool fused_plain_decode = true;
  // CUDA: SD steps verify all trees in one models::CudaDecoder::Forward (fused kernels with tree
  // attention, CUDA graphs per row-count bucket when cuda_graphs) instead of TreeForward's eager
  // layer loop; trees of more than 64 nodes and unsupported models use TreeForward.
  bool fused_verify = true;
  bool cuda_graphs = true;
  // CUDA: models::CudaDecoderOptions::tensor_core_gemm for the target's steps of 5-64 rows
  // (verification of draft trees; off until measured).
  bool tensor_core_gemm = false;
  // CUDA: models::CudaDecoderOptions::gemv_max_rows for the target's steps (verification of a
  // chain of up to 7 drafts fits the 8-row GEMVs).
  int64_t target_gemv_max_rows = 4;
  // CUDA: models::CudaDecoderOptions::tree_attention_shared_keys for target and drafter steps.
  bool tree_attention_shared_keys = false;
  // CUDA (with fused_verify): top-k drafting runs on the device (speculative/device_draft.h),
  // one copy to the host per step instead of one per depth; false: the host loop of
  // DraftTreeBuilder (the reference the tests compare it with).
  bool device_draft = true;
  // Pending drafter pairs per request beyond which they are fed to the drafter at once (bounds
  // the kept hidden states while SD is off; a request that ends before SD turns on is never
  // fed). Longer runs are fed in pieces of kCatchUpPiece pairs (the fused step's chains).
  int64_t max_pending_pairs = 256;
  // Chain strategies only: draft tokens are sampled from the drafter's distribution after the
  // request's temperature/top-k/top-p (uniforms on stream kDraftStream) and verified with
  // VerifySampledChain; otherwise drafts are the drafter's top-k, verified with VerifyTree.
  bool sample_drafts = false;
  // Testing/analysis hook: when set, draft log-probs [V] come from this function of the full
  // token context (prompt, generated tokens, then the tree path) instead of the drafter.
  std::function<torch::Tensor(const std::vector<int64_t>& context)> draft_oracle;
  // Testing/analysis hook: when set, called with every SD step's draft trees (batch order)
  // before they are verified.
  std::function<void(const std::vector<DraftTree>& trees)> draft_observer;
  // Analysis: synchronize the device between the phases of each SD step and add their times to
  // SpeculativeStats::phase_seconds (costs a few device synchronizations a step).
  bool phase_timing = false;
};

struct SpeculativeStats {
  int64_t steps = 0;             // request-steps (one tree verified for one request)
  int64_t draft_tokens = 0;      // draft tokens verified
  int64_t accepted_tokens = 0;   // draft tokens accepted
  int64_t sd_on_steps = 0;       // decode steps with SD (engine steps, not request-steps)
  int64_t sd_off_steps = 0;      // plain decode steps
  int64_t generated_tokens = 0;  // all tokens produced (prefill, plain and SD steps)
  double draft_seconds = 0;      // drafting (drafter catch-up included), device synchronized
  double verify_seconds = 0;     // target tree forward + verification + bookkeeping
  double plain_seconds = 0;      // plain decode steps
  // Strategy name -> histogram of request-steps by accepted draft tokens (index = accepted).
  std::map<std::string, std::vector<int64_t>> accepted_histogram;
  // With SpeculativeEngineOptions::phase_timing: seconds per phase of the SD steps: "catch_up"
  // (drafter fed the accepted pairs), "draft" (trees grown), "verify_forward" (target tree
  // forward), "accept" (acceptance decisions), "commit" (caches, hidden states, outputs).
  std::map<std::string, double> phase_seconds;

  // Tokens gained per request-step (accepted + 1): the "accept length".
  double mean_accept_length() const {
    return steps == 0 ? 0.0 : static_cast<double>(accepted_tokens + steps) / steps;
  }
};

class SpeculativeEngine {
 public:
  // Moves target and drafter to options.device/dtype and allocates both caches; fails if the
  // drafter does not fit the target or the options are inconsistent.
  static Result<std::unique_ptr<SpeculativeEngine>> Create(models::Transformer target,
                                                           Drafter drafter,
                                                           const SpeculativeEngineOptions& options);
  ~SpeculativeEngine();

  // Queues a request; kInvalidArgument for a bad prompt or sampling parameters.
  Result<models::RequestId> Submit(models::Request request,
                                   models::FinishCallback on_finish = nullptr);
  // One iteration (admit + prefill, one decode step). No-op when idle.
  Status Step();
  // Drops a waiting or running request (callback with kCancelled); kNotFound if unknown.
  Status Cancel(models::RequestId id);
  Status RunUntilIdle();
  // Submits all, runs until idle, returns results in the order of `requests` (no hidden states).
  Result<std::vector<models::RequestResult>> Generate(const std::vector<models::Request>& requests);

  // Copies new drafter weights in place between steps (see the class comment).
  Status LoadDrafterWeights(const models::CheckpointTensors& tensors);

  void set_strategy(const Strategy& strategy) { options_.strategy = strategy; }
  const SpeculativeStats& stats() const { return stats_; }
  void ResetStats() { stats_ = {}; }
  bool speculating() const { return switch_.on(); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  const SpeculativeEngineOptions& options() const { return options_; }
  models::Transformer& target() { return target_; }
  Drafter& drafter() { return drafter_; }
  StrategyBandit* bandit() { return bandit_.get(); }

 private:
  struct Sequence;
  SpeculativeEngine(models::Transformer target, Drafter drafter,
                    const SpeculativeEngineOptions& options);
  // Step()'s work on `batch` (the running requests, num_decode of them; admitted ones are
  // appended); on an error Step() puts every request back.
  Status RunStep(std::vector<std::unique_ptr<Sequence>>& batch, size_t num_decode);
  Status Prefill(std::vector<Sequence*>& batch);
  // `arm`: the bandit arm that chose this step (rewarded with its outcome), or -1.
  Status PlainDecode(std::vector<Sequence*>& batch, int64_t arm = -1);
  Status SpeculativeDecode(std::vector<Sequence*>& batch, int64_t arm);
  // The target forward of all trees of an SD step (decoder_ or TreeForward): the float32 logits
  // [N, V] and hidden states [N, H] of every tree node, request by request (N = all nodes; the
  // fused step's own rows, no copy), cache written at start + i.
  Status VerifyForward(const std::vector<DraftTree>& trees, const std::vector<int64_t>& starts,
                       const std::vector<int64_t>& slots, torch::Tensor* logits,
                       torch::Tensor* hidden);
  // Feeds the pending drafter pairs of `batch` (all but the newest pair with keep_last) and
  // returns, per request, the drafter output at its newest fed pair (the predicted hidden state
  // the root's children are drafted from; undefined if none was fed). One drafter forward for
  // the batch, after one forward per kCatchUpPiece pairs for the requests that hold more (the
  // fused step takes chains of <= 64 rows). With root_logits, when the fused drafter fed every
  // request of `batch` in the last forward: their draft logits (float32 [B, V], the drafter
  // step's LM head on those rows), else left undefined.
  std::vector<torch::Tensor> CatchUpDrafter(const std::vector<Sequence*>& batch, bool keep_last,
                                            torch::Tensor* root_logits = nullptr);
  static constexpr int64_t kCatchUpPiece = 64;
  // One drafter forward over up to max_pairs pending pairs of each request (CatchUpDrafter).
  std::vector<torch::Tensor> FeedPendingPairs(const std::vector<Sequence*>& batch, bool keep_last,
                                              int64_t max_pairs, torch::Tensor* root_logits);
  // Each request's pending hidden states as one [pending pairs, H] tensor (one gather for all).
  static std::vector<torch::Tensor> PendingHidden(const std::vector<Sequence*>& seqs);
  // One request's tree (oracle and sampled drafts: their expansions run per request).
  DraftTree Draft(Sequence* seq, const Strategy& strategy, const torch::Tensor& root_hidden);
  // The drafter's top-k trees of all of `batch` (one drafter forward per depth for the batch).
  // root_logits: the roots' draft logits when CatchUpDrafter gave them (undefined: the LM head
  // is applied to root_hidden here).
  std::vector<DraftTree> DraftBatch(const std::vector<Sequence*>& batch, const Strategy& strategy,
                                    const std::vector<torch::Tensor>& root_hidden,
                                    const torch::Tensor& root_logits = {});
  DraftTree SampleChain(Sequence* seq, const Strategy& strategy, const torch::Tensor& root_logprobs,
                        const ExpandFn& expand);
  // Appends `tokens` (with log-probs) and marks the request finished when it is.
  void Append(Sequence* seq, const std::vector<int64_t>& tokens,
              const std::vector<float>& logprobs);
  void Finish(std::unique_ptr<Sequence> seq);
  void Synchronize() const;

  models::Transformer target_;
  Drafter drafter_;
  SpeculativeEngineOptions options_;
  std::unique_ptr<models::KvCache> target_cache_, drafter_cache_;
  // CUDA fused kernels over the target cache (null: eager); serves SD-off steps when
  // fused_plain_decode and tree verification when fused_verify.
  std::unique_ptr<models::CudaDecoder> decoder_;
  // The drafter's layer through the same kernels over the drafter cache (with fused_verify).
  std::unique_ptr<models::CudaDecoder> drafter_decoder_;
  // The on-device drafting loop over drafter_decoder_ (device_draft.h; CUDA builds only).
  // shared_ptr: the type is complete only where it is built.
  std::shared_ptr<DeviceDraftLoop> device_draft_;
  SpeculationSwitch switch_;
  std::unique_ptr<StrategyBandit> bandit_;
  SpeculativeStats stats_;
  models::RequestId next_id_ = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
};

}  // namespace tlt::speculative
