// Engine: continuous-batching generation with a Transformer and a slot KV cache.
//
// The engine shares `model` (a module holder) with the caller and moves it to its device/dtype.
// Requests wait in FIFO order until a KV-cache slot is free, then join the running batch: each
// Step() first prefills the newly admitted requests together (one right-padded forward, which
// also samples their first token), then decodes one token for every request that was already
// running (one forward of single tokens). A request leaves the batch as soon as it finishes:
// `max_new_tokens` reached or the sequence filled its cache slot (kLength), or it sampled one of
// its stop tokens (kStop; the stop token is included in the output). Its slot is freed at once
// and its callback fires, from inside Step(), on the caller's thread. A callback may
// Submit() new requests; it must not call Step(), Cancel() or RunUntilIdle().
//
// Sampling is per request (temperature, top-k, top-p) with counter-based randomness: the seed
// alone fixes a request's tokens, whatever else is in the batch (see sampling.h). Log-probs are
// under each request's processed distribution. With return_hidden_states the result carries, for
// each generated token, the final hidden state (after the final norm) that predicted it.
//
// LoadWeights() copies new weights into the model between steps, in place: the cache is not
// reallocated and running requests continue (their cached keys/values stay those computed with
// the old weights). ReleaseCache() frees the cache memory while nothing is running (an idle GPU
// lends it to drafter training); RecreateCache() takes it back before the next Step().
//
// Not thread-safe: one owner (a rollout actor) calls it from one thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/cuda_decoder.h"
#include "models/kv_cache.h"
#include "models/sampling.h"
#include "models/transformer.h"
#include "runtime/status.h"

namespace tlt::models {

// Prefills of at most this many FusedPrefill steps (64-token chunks) run through the decoder.
inline constexpr int64_t kMaxFusedPrefillSteps = 4;

using RequestId = uint64_t;

struct Request {
  std::vector<int64_t> prompt;  // token ids; 1 <= size < max_sequence_length
  int64_t max_new_tokens = 16;
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::vector<int64_t> stop_token_ids;
  bool return_hidden_states = false;
  bool return_prompt_hidden_states = false;  // RequestResult::prompt_hidden_states
};

// kInvalidArgument naming the problem: a prompt that is empty, not shorter than
// `max_sequence_length` or has a token outside [0, vocab_size); max_new_tokens < 1; top_p
// outside (0, 1]. Every engine (plain or speculative) checks requests with it on Submit.
Status ValidateRequest(const Request& request, int64_t max_sequence_length, int64_t vocab_size);

enum class FinishReason { kLength, kStop, kCancelled };
const char* FinishReasonName(FinishReason reason);

struct RequestResult {
  RequestId id = 0;
  std::vector<int64_t> tokens;  // generated tokens (the prompt excluded)
  std::vector<float> logprobs;  // one per generated token
  FinishReason finish_reason = FinishReason::kLength;
  torch::Tensor hidden_states;  // [tokens, hidden] on CPU, model dtype; undefined unless asked
  // [prompt tokens, hidden] on CPU, model dtype: the final hidden state (after the final norm) at
  // each prompt position; undefined unless return_prompt_hidden_states.
  torch::Tensor prompt_hidden_states;
};

using FinishCallback = std::function<void(const RequestResult&)>;

struct EngineOptions {
  int64_t max_batch_size = 8;         // KV-cache slots = requests running at once
  int64_t max_sequence_length = 512;  // prompt + generated tokens per request
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;  // bfloat16 on CUDA
  int64_t max_prefill_tokens = 8192;     // prompt tokens admitted per Step (>= one prompt)
  // When > 0, caps the slots so that the KV cache fits in this many bytes (at
  // max_sequence_length per slot); Create fails if not even one slot fits.
  int64_t kv_cache_budget_bytes = 0;
  // CUDA only: decode steps through the fused kernels of CudaDecoder (models/cuda_decoder.h),
  // replayed from CUDA graphs per batch-size bucket when cuda_graphs. Without CUDA LibTorch, or
  // for an unsupported model, the engine falls back to Transformer::Forward (as when false).
  bool fused_decode = true;
  bool cuda_graphs = true;
  // Fused decode only: CudaDecoderOptions::small_batch_gemv (GEMVs for batches of <= 4 rows).
  bool small_batch_gemv = true;
  // Fused decode only: CudaDecoderOptions::tensor_core_gemm (5-64 rows; off until measured).
  bool tensor_core_gemm = false;
  // Fused decode only: prompts that take at most kMaxFusedPrefillSteps steps of 64-token chunks
  // are prefilled through the decoder's kernels (FusedPrefill) instead of the eager forward.
  bool fused_prefill = true;
  // Fused decode only: CudaDecoderOptions::time_steps (benchmarks).
  bool time_decode_steps = false;
};

class Engine {
 public:
  // Moves `model` to options.device/dtype and allocates the cache.
  static Result<std::unique_ptr<Engine>> Create(Transformer model, const EngineOptions& options);

  // Queues a request; kInvalidArgument for an empty or too long prompt or bad sampling params.
  Result<RequestId> Submit(Request request, FinishCallback on_finish = nullptr);
  // One iteration (admit + prefill, decode). No-op when idle.
  Status Step();
  // Drops a waiting or running request: frees its slot and fires its callback with what it has
  // generated so far and kCancelled. kNotFound if it is unknown or already finished.
  Status Cancel(RequestId id);
  // Steps until no request is waiting or running.
  Status RunUntilIdle();
  // Submits all, runs until idle, returns results in the order of `requests`.
  Result<std::vector<RequestResult>> Generate(const std::vector<Request>& requests);

  // In-place weight update between steps (see the class comment).
  Status LoadWeights(const CheckpointTensors& tensors);
  Status LoadWeightsFromDirectory(const std::string& dir);
  // kUnavailable while requests are running.
  Status ReleaseCache();
  Status RecreateCache();
  bool cache_released() const { return cache_->released(); }
  // Whether decode steps run through CudaDecoder, and how many graphs it has captured.
  bool fused_decode_active() const { return decoder_ != nullptr; }
  int64_t num_cuda_graphs() const { return decoder_ ? decoder_->num_graphs() : 0; }
  // With time_decode_steps: device seconds of the graph-replayed decode steps, and their count.
  double decode_device_seconds() const { return decoder_ ? decoder_->device_seconds() : 0; }
  int64_t timed_decode_steps() const { return decoder_ ? decoder_->timed_steps() : 0; }

  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  // KV-cache slots (requests that can run at once).
  int64_t max_running() const { return cache_->options().max_slots; }
  Transformer& model() { return model_; }
  const EngineOptions& options() const { return options_; }

 private:
  struct Sequence {
    RequestId id;
    Request request;
    FinishCallback on_finish;
    int64_t slot = -1;
    std::vector<int64_t> tokens;
    std::vector<float> logprobs;
    std::vector<torch::Tensor> hidden;
    torch::Tensor prompt_hidden;
  };
  Engine(Transformer model, const EngineOptions& options);
  // Forward `seqs` (prefill when `prefill`), sample one token each, retire finished ones.
  // Runs one forward for `batch` and moves each request on (running_ or finished); on an error
  // before that, `batch` is left as it was (Step() puts its requests back).
  Status RunBatch(std::vector<std::unique_ptr<Sequence>>& batch, bool prefill);
  // The eager path: Transformer::Forward, then Sample() on the host-visible logits.
  Status ForwardAndSample(const std::vector<std::unique_ptr<Sequence>>& batch, bool prefill,
                          const std::vector<int64_t>& start, const std::vector<int64_t>& count,
                          const std::vector<int64_t>& slots, int64_t T, bool want_hidden,
                          SampledTokens* sampled, torch::Tensor* hidden);
  void Finish(std::unique_ptr<Sequence> seq, FinishReason reason);

  Transformer model_;
  EngineOptions options_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<CudaDecoder> decoder_;  // null: eager decode
  RequestId next_id_ = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
};

}  // namespace tlt::models
