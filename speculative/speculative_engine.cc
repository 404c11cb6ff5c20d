// SpeculativeEngine: queue, admission, prefill, plain decode steps and request bookkeeping.
// The speculative step (drafting, verification) is in speculative_decode.cc.
#include "speculative/speculative_engine.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "models/sampling.h"
#include "speculative/engine_sequence.h"

namespace tlt::speculative {

SpeculativeEngine::SpeculativeEngine(models::Transformer target, Drafter drafter,
                                     const SpeculativeEngineOptions& options)
    : target_(std::move(target)),
      drafter_(std::move(drafter)),
      options_(options),
      switch_(options.sd_batch_threshold, options.sd_patience) {}

SpeculativeEngine::~SpeculativeEngine() = default;

Result<std::unique_ptr<SpeculativeEngine>> SpeculativeEngine::Create(
    models::Transformer target, Drafter drafter, const SpeculativeEngineOptions& options) {
  RETURN_NOT_OK(drafter->CheckFits(target->config()));
  if (options.max_batch_size < 1 || options.max_sequence_length < 2) {
    return InvalidArgument("SpeculativeEngine: max_batch_size >= 1, max_sequence_length >= 2");
  }
  if (options.sd_patience < 0 || options.max_pending_pairs < 1) {
    return InvalidArgument("SpeculativeEngine: sd_patience >= 0, max_pending_pairs >= 1");
  }
  std::vector<Strategy> strategies = {options.strategy};
  if (options.adaptive) {
    if (options.adaptive_strategies.empty()) {
      return InvalidArgument("SpeculativeEngine: adaptive mode needs at least one strategy");
    }
    strategies = options.adaptive_strategies;
  }
  int64_t max_tokens = 1, max_top_k = 1;
  for (const Strategy& s : strategies) {
    if (s.steps < 1 || s.top_k < 1 || s.num_tokens < 1) {
      return InvalidArgument("SpeculativeEngine: bad strategy " + s.Name());
    }
    if (options.sample_drafts && !s.is_chain()) {
      return InvalidArgument(
          "SpeculativeEngine: sampled drafts need a chain strategy (top-k 1), not " + s.Name());
    }
    max_tokens = std::max(max_tokens, s.max_draft_tokens());
    max_top_k = std::max(max_top_k, s.top_k);
  }
  try {
    target->to(options.device, options.dtype);
    drafter->to(options.device, options.dtype);
    target->eval();
    drafter->eval();
    std::unique_ptr<SpeculativeEngine> e(new SpeculativeEngine(target, drafter, options));
    if (options.adaptive) {
      e->bandit_ = std::make_unique<StrategyBandit>(strategies, options.bandit);
    }
    // Room for the largest tree beyond the last committed position.
    const int64_t length = options.max_sequence_length + 64 + 4 * max_tokens;
    e->target_cache_ = std::make_unique<models::KvCache>(models::KvCacheOptions::ForModel(
        target->config(), options.max_batch_size, length, options.dtype, options.device));
    e->drafter_cache_ = std::make_unique<models::KvCache>(
        drafter->CacheOptions(options.max_batch_size, length + 4 * max_tokens * max_top_k,
                              options.dtype, options.device));
    if ((options.fused_plain_decode || options.fused_verify) && options.device.is_cuda()) {
      models::CudaDecoderOptions decoder_options;
      decoder_options.use_graphs = options.cuda_graphs;
      decoder_options.tensor_core_gemm = options.tensor_core_gemm;
      decoder_options.gemv_max_rows = options.target_gemv_max_rows;
      decoder_options.tree_attention_shared_keys = options.tree_attention_shared_keys;
      // Verification steps put every node of every tree (<= 64 each) in one step; prefill
      // chunks (models::FusedPrefill) take up to 256 rows.
      decoder_options.max_rows =
          std::max<int64_t>(256, options.max_batch_size * std::min<int64_t>(64, max_tokens + 1));
      std::string why;
      e->decoder_ =
          models::CudaDecoder::Create(target, e->target_cache_.get(), decoder_options, &why);
      if (!e->decoder_) LOG(INFO) << "speculative engine: eager target forwards (" << why << ")";
    }
    if (options.fused_verify && options.device.is_cuda()) {
      models::CudaDecoderOptions drafter_options;
      drafter_options.use_graphs = options.cuda_graphs;
      drafter_options.tree_attention_shared_keys = options.tree_attention_shared_keys;
      // Catch-up chains and one depth of every request's tree (<= 64 rows each).
      drafter_options.max_rows = options.max_batch_size * 64;
      std::string why;
      models::Transformer t = e->target_;
      Drafter d = e->drafter_;
      e->drafter_decoder_ = models::CudaDecoder::CreateFromWeights(
          [t, d] { return DrafterDecoderWeights(t, d); }, e->drafter_cache_.get(),
          drafter_options, &why);
      if (!e->drafter_decoder_) LOG(INFO) << "speculative engine: eager drafter (" << why << ")";
    }
    return e;
  } catch (const c10::Error& err) {
    return Internal(std::string("SpeculativeEngine: ") + err.what_without_backtrace());
  }
}

Result<models::RequestId> SpeculativeEngine::Submit(models::Request request,
                                                    models::FinishCallback on_finish) {
  RETURN_NOT_OK(
      models::ValidateRequest(request, options_.max_sequence_length, target_->config().vocab_size));
  auto seq = std::make_unique<Sequence>();
  seq->id = next_id_++;
  seq->request = std::move(request);
  seq->on_finish = std::move(on_finish);
  const models::RequestId id = seq->id;
  waiting_.push_back(std::move(seq));
  return id;
}

Status SpeculativeEngine::Step() {
  if (idle()) return Status::OK();
  torch::NoGradGuard no_grad;
  std::vector<std::unique_ptr<Sequence>> batch = std::move(running_);
  running_.clear();
  const size_t num_decode = batch.size();
  Status status;
  try {
    status = RunStep(batch, num_decode);
  } catch (const c10::Error& e) {
    status = Internal(std::string("speculative engine step: ") + e.what_without_backtrace());
  }
  if (!status.ok()) {
    // No request is lost: admitted ones that were not prefilled go back to the front of the
    // queue (slots freed), the others stay running; a later Step() or Cancel() may proceed.
    for (size_t i = batch.size(); i-- > num_decode;) {
      Sequence* seq = batch[i].get();
      if (seq == nullptr || !seq->context.empty()) continue;
      if (seq->target_slot >= 0) CHECK_OK(target_cache_->FreeSlot(seq->target_slot));
      if (seq->drafter_slot >= 0) CHECK_OK(drafter_cache_->FreeSlot(seq->drafter_slot));
      seq->target_slot = seq->drafter_slot = -1;
      waiting_.push_front(std::move(batch[i]));
    }
    for (auto& seq : batch) {
      if (seq) running_.push_back(std::move(seq));
    }
    return status;
  }
  for (auto& seq : batch) {
    if (seq->finished) {
      Finish(std::move(seq));
    } else {
      running_.push_back(std::move(seq));
    }
  }
  return Status::OK();
}

Status SpeculativeEngine::RunStep(std::vector<std::unique_ptr<Sequence>>& batch,
                                  size_t num_decode) {
  while (!waiting_.empty() && target_cache_->num_free_slots() > 0 &&
         drafter_cache_->num_free_slots() > 0) {
    std::unique_ptr<Sequence> seq = std::move(waiting_.front());
    waiting_.pop_front();
    Sequence* s = seq.get();
    batch.push_back(std::move(seq));  // in the batch first: an error below puts it back
    ASSIGN_OR_RETURN(s->target_slot, target_cache_->AllocateSlot());
    ASSIGN_OR_RETURN(s->drafter_slot, drafter_cache_->AllocateSlot());
    RETURN_NOT_OK(target_cache_->SetLength(s->target_slot, 0));
    RETURN_NOT_OK(drafter_cache_->SetLength(s->drafter_slot, 0));
  }
  std::vector<Sequence*> decode, admit;
  for (size_t i = 0; i < batch.size(); ++i)
    (i < num_decode ? decode : admit).push_back(batch[i].get());
  if (!admit.empty()) RETURN_NOT_OK(Prefill(admit));
  if (decode.empty()) return Status::OK();
  const int64_t B = static_cast<int64_t>(decode.size());
  if (!switch_.Observe(B)) return PlainDecode(decode);
  const int64_t arm = bandit_ ? bandit_->Select(B) : -1;
  if (bandit_ && bandit_->is_plain(arm)) return PlainDecode(decode, arm);
  return SpeculativeDecode(decode, arm);
}

Status SpeculativeEngine::Prefill(std::vector<Sequence*>& batch) {
  const int64_t B = static_cast<int64_t>(batch.size());
  std::vector<int64_t> start(B, 0), count(B), slots(B);
  int64_t T = 1;
  for (int64_t b = 0; b < B; ++b) {
    count[b] = static_cast<int64_t>(batch[b]->request.prompt.size());
    slots[b] = batch[b]->target_slot;
    T = std::max(T, count[b]);
  }
  torch::Tensor tokens = torch::zeros({B, T}, torch::kInt64);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = batch[b]->request.prompt;
    std::copy(p.begin(), p.end(), tokens.data_ptr<int64_t>() + b * T);
  }
  // Hidden states of every prompt token (the drafter's pairs), logits of the last one only.
  std::vector<torch::Tensor> hidden(B);
  torch::Tensor logits;
  if (decoder_ && options_.fused_verify &&
      models::FusedPrefillSteps(*decoder_, count) <= models::kMaxFusedPrefillSteps) {
    std::vector<std::vector<int64_t>> prompts;
    for (Sequence* seq : batch) prompts.push_back(seq->request.prompt);
    ASSIGN_OR_RETURN(models::PrefillOutput out,
                     models::FusedPrefill(*decoder_, prompts, start, slots, /*all_hidden=*/true));
    logits = out.last_logits;
    hidden = out.all_hidden;
  } else {
    models::BatchLayout layout =
        models::BatchLayout::Make(start, count, T, slots, options_.device);
    models::ForwardOutput out =
        target_->Forward(tokens.to(options_.device), layout, target_cache_.get(),
                         models::ForwardOptions().last_token_only(true).return_all_hidden(true));
    logits = out.logits;
    for (int64_t b = 0; b < B; ++b) hidden[b] = out.all_hidden[b].narrow(0, 0, count[b]);
  }
  std::vector<models::SamplingParams> params;
  std::vector<uint64_t> seeds, counters(B, 0);
  for (Sequence* seq : batch) {
    params.push_back(ParamsOf(seq->request));
    seeds.push_back(seq->request.seed);
  }
  models::SampledTokens first = models::Sample(logits, params, seeds, counters);
  for (int64_t b = 0; b < B; ++b) {
    Sequence* seq = batch[b];
    RETURN_NOT_OK(target_cache_->SetLength(seq->target_slot, count[b]));
    seq->context = seq->request.prompt;
    if (!options_.draft_oracle) {
      seq->pending_tokens.assign(seq->request.prompt.begin() + 1, seq->request.prompt.end());
      seq->pending_tokens.push_back(first.tokens[b]);
      seq->pending_hidden.push_back({hidden[b], 0, hidden[b].size(0)});
    }
    Append(seq, {first.tokens[b]}, {first.logprobs[b]});
  }
  return Status::OK();
}

Status SpeculativeEngine::PlainDecode(std::vector<Sequence*>& batch, int64_t arm) {
  // Timed on the host without synchronizing the device (a synchronization costs microseconds
  // even on an idle device, on a step that models::Engine takes without them): every earlier
  // step ends with its results on the host and the decode waits for the sampled tokens, so only
  // the hidden states' copy can run past the measurement.
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t B = static_cast<int64_t>(batch.size());
  std::vector<int64_t> start(B), slots(B), tokens(B);
  std::vector<models::SamplingParams> params;
  std::vector<uint64_t> seeds, counters;
  for (int64_t b = 0; b < B; ++b) {
    Sequence* seq = batch[b];
    slots[b] = seq->target_slot;
    start[b] = target_cache_->length(seq->target_slot);
    tokens[b] = seq->context.back();
    params.push_back(ParamsOf(seq->request));
    seeds.push_back(seq->request.seed);
    counters.push_back(seq->result.tokens.size());  // models::Engine's counter
  }
  models::SampledTokens sampled;
  torch::Tensor hidden;  // [B, H] on the device
  if (decoder_ && options_.fused_plain_decode) {
    std::vector<models::DecodeRow> rows(B);
    for (int64_t b = 0; b < B; ++b) {
      rows[b].token = tokens[b];
      rows[b].position = start[b];
      rows[b].slot = slots[b];
      rows[b].params = params[b];
      rows[b].uniform = models::CounterUniform(seeds[b], counters[b]);
    }
    ASSIGN_OR_RETURN(models::DecodeOutput decoded,
                     decoder_->Decode(rows, /*want_hidden=*/!options_.draft_oracle,
                                      /*hidden_on_device=*/true));
    sampled.tokens = std::move(decoded.tokens);
    sampled.logprobs = std::move(decoded.logprobs);
    if (decoded.hidden.defined()) hidden = decoded.hidden.to(options_.device, options_.dtype);
  } else {
    models::BatchLayout layout =
        models::BatchLayout::Make(start, std::vector<int64_t>(B, 1), 1, slots, options_.device);
    models::ForwardOutput out = target_->Forward(
        torch::tensor(tokens, torch::kInt64).view({B, 1}).to(options_.device), layout,
        target_cache_.get(), models::ForwardOptions().last_token_only(true).return_hidden(true));
    sampled = models::Sample(out.logits, params, seeds, counters);
    hidden = out.hidden;
  }
  std::vector<Sequence*> overfull;
  for (int64_t b = 0; b < B; ++b) {
    Sequence* seq = batch[b];
    RETURN_NOT_OK(target_cache_->SetLength(seq->target_slot, start[b] + 1));
    if (!options_.draft_oracle) {
      seq->pending_tokens.push_back(sampled.tokens[b]);
      seq->pending_hidden.push_back({hidden, b, 1});
    }
    Append(seq, {sampled.tokens[b]}, {sampled.logprobs[b]});
    if (!seq->finished &&
        static_cast<int64_t>(seq->pending_tokens.size()) > options_.max_pending_pairs) {
      overfull.push_back(seq);
    }
  }
  if (!overfull.empty()) {
    CatchUpDrafter(overfull, /*keep_last=*/true);
    Synchronize();  // the catch-up belongs to this step's time
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.plain_seconds += seconds;
  stats_.sd_off_steps++;
  if (bandit_ && arm >= 0) bandit_->Update(B, arm, 1.0, seconds);
  return Status::OK();
}

void SpeculativeEngine::Append(Sequence* seq, const std::vector<int64_t>& tokens,
                               const std::vector<float>& logprobs) {
  const auto& req = seq->request;
  for (size_t i = 0; i < tokens.size() && !seq->finished; ++i) {
    seq->context.push_back(tokens[i]);
    seq->result.tokens.push_back(tokens[i]);
    seq->result.logprobs.push_back(logprobs[i]);
    stats_.generated_tokens++;
    const bool stop = std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(), tokens[i]) !=
                      req.stop_token_ids.end();
    if (stop) {
      seq->finished = true;
      seq->result.finish_reason = models::FinishReason::kStop;
    } else if (static_cast<int64_t>(seq->result.tokens.size()) >= req.max_new_tokens ||
               static_cast<int64_t>(seq->context.size()) >= options_.max_sequence_length) {
      seq->finished = true;
      seq->result.finish_reason = models::FinishReason::kLength;
    }
  }
}

void SpeculativeEngine::Finish(std::unique_ptr<Sequence> seq) {
  if (seq->target_slot >= 0) CHECK_OK(target_cache_->FreeSlot(seq->target_slot));
  if (seq->drafter_slot >= 0) CHECK_OK(drafter_cache_->FreeSlot(seq->drafter_slot));
  seq->result.id = seq->id;
  if (seq->on_finish) seq->on_finish(seq->result);
}

Status SpeculativeEngine::Cancel(models::RequestId id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      std::unique_ptr<Sequence> seq = std::move(*it);
      waiting_.erase(it);
      seq->result.finish_reason = models::FinishReason::kCancelled;
      Finish(std::move(seq));
      return Status::OK();
    }
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id == id) {
      std::unique_ptr<Sequence> seq = std::move(*it);
      running_.erase(it);
      seq->result.finish_reason = models::FinishReason::kCancelled;
      Finish(std::move(seq));
      return Status::OK();
    }
  }
  return NotFound("speculative engine: no waiting or running request " + std::to_string(id));
}

Status SpeculativeEngine::RunUntilIdle() {
  while (!idle()) RETURN_NOT_OK(Step());
  return Status::OK();
}

Result<std::vector<models::RequestResult>> SpeculativeEngine::Generate(
    const std::vector<models::Request>& requests) {
  std::map<models::RequestId, size_t> index;
  std::vector<models::RequestResult> results(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto id = Submit(requests[i], [&results, &index](const models::RequestResult& r) {
      results[index.at(r.id)] = r;
    });
    if (!id.ok()) {
      for (const auto& [queued, unused] : index) (void)Cancel(queued);
      return id.status().WithContext("request " + std::to_string(i));
    }
    index[*id] = i;
  }
  RETURN_NOT_OK(RunUntilIdle());
  return results;
}

Status SpeculativeEngine::LoadDrafterWeights(const models::CheckpointTensors& tensors) {
  return drafter_->LoadTensors(tensors).WithContext("swapping drafter weights");
}

void SpeculativeEngine::Synchronize() const {
  if (options_.device.is_cuda()) torch::cuda::synchronize();
}

}  // namespace tlt::speculative
