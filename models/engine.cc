#include "models/engine.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

namespace tlt::models {

#ifndef TLT_MODELS_CUDA_DECODER
// Without a CUDA LibTorch there is no fused decoder (cuda_decoder.cc is not compiled).
std::unique_ptr<CudaDecoder> CudaDecoder::Create(Transformer, KvCache*, const CudaDecoderOptions&,
                                                 std::string* why) {
  if (why != nullptr) *why = "built without CUDA";
  return nullptr;
}
std::unique_ptr<CudaDecoder> CudaDecoder::CreateFromWeights(std::function<DecoderWeights()>,
                                                            KvCache*, const CudaDecoderOptions&,
                                                            std::string* why) {
  if (why != nullptr) *why = "built without CUDA";
  return nullptr;
}
#endif

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kLength:
      break;
  }
  return "length";
}

Engine::Engine(Transformer model, const EngineOptions& options)
    : model_(std::move(model)), options_(options) {}

Result<std::unique_ptr<Engine>> Engine::Create(Transformer model, const EngineOptions& options) {
  if (options.max_batch_size <= 0 || options.max_sequence_length <= 1) {
    return InvalidArgument("engine: max_batch_size must be > 0 and max_sequence_length > 1");
  }
  std::unique_ptr<Engine> engine(new Engine(std::move(model), options));
  try {
    engine->model_->to(options.device, options.dtype);
    engine->model_->eval();
    KvCacheOptions cache =
        KvCacheOptions::ForModel(engine->model_->config(), options.max_batch_size,
                                 options.max_sequence_length, options.dtype, options.device);
    if (options.kv_cache_budget_bytes > 0) {
      cache.max_slots =
          std::min(cache.max_slots, cache.SlotsForBudget(options.kv_cache_budget_bytes));
      if (cache.max_slots == 0) {
        return InvalidArgument(
            "engine: kv_cache_budget_bytes " + std::to_string(options.kv_cache_budget_bytes) +
            " is below one slot (" + std::to_string(cache.BytesPerSlot()) +
            " bytes at max_sequence_length " + std::to_string(options.max_sequence_length) + ")");
      }
    }
    engine->cache_ = std::make_unique<KvCache>(cache);
    if (options.fused_decode && options.device.is_cuda()) {
      CudaDecoderOptions decoder_options;
      decoder_options.use_graphs = options.cuda_graphs;
      decoder_options.small_batch_gemv = options.small_batch_gemv;
      decoder_options.tensor_core_gemm = options.tensor_core_gemm;
      decoder_options.time_steps = options.time_decode_steps;
      // Prefill chunks of short prompts (FusedPrefill) share the step's row buckets.
      decoder_options.max_rows = std::max<int64_t>(engine->cache_->options().max_slots, 256);
      std::string why;
      engine->decoder_ =
          CudaDecoder::Create(engine->model_, engine->cache_.get(), decoder_options, &why);
      if (!engine->decoder_) LOG(INFO) << "engine: eager decode (" << why << ")";
    }
  } catch (const c10::Error& e) {
    return Internal(std::string("creating engine: ") + e.what_without_backtrace());
  }
  return engine;
}

Status ValidateRequest(const Request& request, int64_t max_sequence_length, int64_t vocab_size) {
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  if (n < 1 || n >= max_sequence_length) {
    return InvalidArgument("prompt has " + std::to_string(n) + " tokens; need 1 .. " +
                           std::to_string(max_sequence_length - 1));
  }
  for (int64_t t : request.prompt) {
    if (t < 0 || t >= vocab_size)
      return InvalidArgument("prompt token " + std::to_string(t) + " out of vocabulary");
  }
  if (request.max_new_tokens < 1) return InvalidArgument("max_new_tokens must be >= 1");
  if (!(request.top_p > 0 && request.top_p <= 1)) return InvalidArgument("top_p must be in (0, 1]");
  return Status::OK();
}

Result<RequestId> Engine::Submit(Request request, FinishCallback on_finish) {
  RETURN_NOT_OK(
      ValidateRequest(request, options_.max_sequence_length, model_->config().vocab_size));
  if (static_cast<int64_t>(request.prompt.size()) > options_.max_prefill_tokens) {
    return InvalidArgument("prompt longer than max_prefill_tokens");
  }
  auto seq = std::make_unique<Sequence>();
  seq->id = next_id_++;
  seq->request = std::move(request);
  seq->on_finish = std::move(on_finish);
  const RequestId id = seq->id;
  waiting_.push_back(std::move(seq));
  return id;
}

Status Engine::Step() {
  if (idle()) return Status::OK();
  if (cache_->released()) return Unavailable("engine: KV cache is released; RecreateCache() first");
  torch::NoGradGuard no_grad;
  std::vector<std::unique_ptr<Sequence>> decode = std::move(running_);
  running_.clear();
  std::vector<std::unique_ptr<Sequence>> admit;
  Status status;
  try {
    int64_t prefill_tokens = 0;
    while (status.ok() && !waiting_.empty() && cache_->num_free_slots() > 0) {
      const int64_t n = static_cast<int64_t>(waiting_.front()->request.prompt.size());
      if (!admit.empty() && prefill_tokens + n > options_.max_prefill_tokens) break;
      Result<int64_t> slot = cache_->AllocateSlot();
      if (!slot.ok()) {
        status = slot.status();
        break;
      }
      admit.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
      admit.back()->slot = *slot;
      prefill_tokens += n;
    }
    if (status.ok() && !admit.empty()) status = RunBatch(admit, /*prefill=*/true);
    if (status.ok() && !decode.empty()) status = RunBatch(decode, /*prefill=*/false);
  } catch (const c10::Error& e) {
    status = Internal(std::string("engine step: ") + e.what_without_backtrace());
  }
  if (!status.ok()) {
    // No request is lost: admitted ones not prefilled go back to the front of the queue (their
    // slots freed), running ones stay; a later Step() retries, Cancel() still finds them.
    for (size_t i = admit.size(); i-- > 0;) {
      if (!admit[i]) continue;
      if (admit[i]->slot >= 0) CHECK_OK(cache_->FreeSlot(admit[i]->slot));
      admit[i]->slot = -1;
      waiting_.push_front(std::move(admit[i]));
    }
    for (auto& seq : decode) {
      if (seq) running_.push_back(std::move(seq));
    }
  }
  return status;
}

Status Engine::RunBatch(std::vector<std::unique_ptr<Sequence>>& batch, bool prefill) {
  const int64_t B = static_cast<int64_t>(batch.size());
  std::vector<int64_t> start(B), count(B), slots(B);
  int64_t T = 1;
  bool want_hidden = false;
  for (int64_t b = 0; b < B; ++b) {
    const Sequence& s = *batch[b];
    slots[b] = s.slot;
    start[b] = cache_->length(s.slot);
    count[b] = prefill ? static_cast<int64_t>(s.request.prompt.size()) : 1;
    T = std::max(T, count[b]);
    want_hidden = want_hidden || s.request.return_hidden_states;
  }
  SampledTokens sampled;
  torch::Tensor hidden;
  std::vector<int64_t> lengths;
  for (const auto& s : batch) lengths.push_back(static_cast<int64_t>(s->request.prompt.size()));
  if (prefill && decoder_ && options_.fused_prefill &&
      FusedPrefillSteps(*decoder_, lengths) <= kMaxFusedPrefillSteps) {
    std::vector<std::vector<int64_t>> prompts;
    std::vector<SamplingParams> params;
    std::vector<uint64_t> seeds, counters(B, 0);
    bool want_prompt_hidden = false;
    for (const auto& s : batch) {
      prompts.push_back(s->request.prompt);
      params.push_back(SamplingParams{s->request.temperature, s->request.top_k, s->request.top_p});
      seeds.push_back(s->request.seed);
      want_prompt_hidden = want_prompt_hidden || s->request.return_prompt_hidden_states;
    }
    ASSIGN_OR_RETURN(PrefillOutput out,
                     FusedPrefill(*decoder_, prompts, start, slots, want_prompt_hidden));
    sampled = Sample(out.last_logits, params, seeds, counters);
    if (want_hidden) hidden = out.last_hidden.cpu();
    for (int64_t b = 0; b < B; ++b) {
      if (batch[b]->request.return_prompt_hidden_states) {
        batch[b]->prompt_hidden = out.all_hidden[b].cpu();
      }
    }
  } else if (!prefill && decoder_) {
    std::vector<DecodeRow> rows(B);
    for (int64_t b = 0; b < B; ++b) {
      const Sequence& s = *batch[b];
      rows[b].token = s.tokens.back();
      rows[b].position = start[b];
      rows[b].slot = s.slot;
      rows[b].params = SamplingParams{s.request.temperature, s.request.top_k, s.request.top_p};
      rows[b].uniform = CounterUniform(s.request.seed, s.tokens.size());
    }
    ASSIGN_OR_RETURN(DecodeOutput decoded, decoder_->Decode(rows, want_hidden));
    sampled.tokens = std::move(decoded.tokens);
    sampled.logprobs = std::move(decoded.logprobs);
    hidden = decoded.hidden;
  } else {
    RETURN_NOT_OK(
        ForwardAndSample(batch, prefill, start, count, slots, T, want_hidden, &sampled, &hidden));
  }
  for (int64_t b = 0; b < B; ++b) {
    std::unique_ptr<Sequence> seq = std::move(batch[b]);
    RETURN_NOT_OK(cache_->SetLength(seq->slot, start[b] + count[b]));
    const int64_t token = sampled.tokens[b];
    seq->tokens.push_back(token);
    seq->logprobs.push_back(sampled.logprobs[b]);
    if (seq->request.return_hidden_states) seq->hidden.push_back(hidden[b].clone());
    const auto& stops = seq->request.stop_token_ids;
    const int64_t total = static_cast<int64_t>(seq->request.prompt.size() + seq->tokens.size());
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
      Finish(std::move(seq), FinishReason::kStop);
    } else if (static_cast<int64_t>(seq->tokens.size()) >= seq->request.max_new_tokens ||
               total >= options_.max_sequence_length) {
      Finish(std::move(seq), FinishReason::kLength);
    } else {
      running_.push_back(std::move(seq));
    }
  }
  return Status::OK();
}

Status Engine::ForwardAndSample(const std::vector<std::unique_ptr<Sequence>>& batch, bool prefill,
                                const std::vector<int64_t>& start,
                                const std::vector<int64_t>& count,
                                const std::vector<int64_t>& slots, int64_t T, bool want_hidden,
                                SampledTokens* sampled, torch::Tensor* hidden) {
  const int64_t B = static_cast<int64_t>(batch.size());
  bool want_prompt_hidden = false;
  torch::Tensor tokens = torch::zeros({B, T}, torch::kInt64);
  auto* data = tokens.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const Sequence& s = *batch[b];
    if (prefill) {
      std::copy(s.request.prompt.begin(), s.request.prompt.end(), data + b * T);
      want_prompt_hidden = want_prompt_hidden || s.request.return_prompt_hidden_states;
    } else {
      data[b * T] = s.tokens.back();
    }
  }
  BatchLayout layout = BatchLayout::Make(start, count, T, slots, options_.device);
  ForwardOutput out = model_->Forward(tokens.to(options_.device), layout, cache_.get(),
                                      ForwardOptions()
                                          .last_token_only(true)
                                          .return_hidden(want_hidden)
                                          .return_all_hidden(want_prompt_hidden));
  std::vector<SamplingParams> params(B);
  std::vector<uint64_t> seeds(B), counters(B);
  for (int64_t b = 0; b < B; ++b) {
    const Request& r = batch[b]->request;
    params[b] = SamplingParams{r.temperature, r.top_k, r.top_p};
    seeds[b] = r.seed;
    counters[b] = batch[b]->tokens.size();
  }
  *sampled = Sample(out.logits, params, seeds, counters);
  if (want_hidden) *hidden = out.hidden.cpu();
  if (want_prompt_hidden) {
    torch::Tensor all = out.all_hidden.cpu();
    for (int64_t b = 0; b < B; ++b) {
      if (batch[b]->request.return_prompt_hidden_states) {
        batch[b]->prompt_hidden = all[b].narrow(0, 0, count[b]).clone();
      }
    }
  }
  return Status::OK();
}

void Engine::Finish(std::unique_ptr<Sequence> seq, FinishReason reason) {
  if (seq->slot >= 0) CHECK_OK(cache_->FreeSlot(seq->slot));
  RequestResult result;
  result.id = seq->id;
  result.tokens = std::move(seq->tokens);
  result.logprobs = std::move(seq->logprobs);
  result.finish_reason = reason;
  result.prompt_hidden_states = seq->prompt_hidden;
  if (seq->request.return_hidden_states && !seq->hidden.empty()) {
    result.hidden_states = torch::stack(seq->hidden);
  }
  if (seq->on_finish) seq->on_finish(result);
}

Status Engine::Cancel(RequestId id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      std::unique_ptr<Sequence> seq = std::move(*it);
      waiting_.erase(it);
      Finish(std::move(seq), FinishReason::kCancelled);
      return Status::OK();
    }
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id == id) {
      std::unique_ptr<Sequence> seq = std::move(*it);
      running_.erase(it);
      Finish(std::move(seq), FinishReason::kCancelled);
      return Status::OK();
    }
  }
  return NotFound("engine: no waiting or running request " + std::to_string(id));
}

Status Engine::RunUntilIdle() {
  while (!idle()) RETURN_NOT_OK(Step());
  return Status::OK();
}

Result<std::vector<RequestResult>> Engine::Generate(const std::vector<Request>& requests) {
  std::map<RequestId, size_t> index;
  std::vector<RequestResult> results(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSIGN_OR_RETURN(RequestId id, Submit(requests[i], [&results, &index](const RequestResult& r) {
                       results[index.at(r.id)] = r;
                     }));
    index[id] = i;
  }
  RETURN_NOT_OK(RunUntilIdle());
  return results;
}

Status Engine::LoadWeights(const CheckpointTensors& tensors) {
  return model_->LoadTensors(tensors);
}

Status Engine::LoadWeightsFromDirectory(const std::string& dir) {
  ASSIGN_OR_RETURN(CheckpointTensors tensors, ReadCheckpointTensors(dir));
  return LoadWeights(tensors);
}

Status Engine::ReleaseCache() {
  if (!running_.empty()) {
    return Unavailable("engine: cannot release the KV cache while " +
                       std::to_string(running_.size()) + " requests run");
  }
  if (decoder_) decoder_->Invalidate();  // graphs hold the cache's pointers and their own memory
  cache_->Release();
  return Status::OK();
}

Status Engine::RecreateCache() { return cache_->Recreate(); }

}  // namespace tlt::models
