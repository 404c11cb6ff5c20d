#include "speculative/speculative_engine.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "models/sampling.h"
#include "speculative/verify.h"

namespace tlt::speculative {

struct SpeculativeEngine::Sequence {
  models::Request request;
  models::RequestResult result;
  std::vector<int64_t> context;  // prompt + generated; the last one is the root (not cached)
  int64_t target_slot = -1, drafter_slot = -1;
  uint64_t counter = 0;
  std::vector<int64_t> pending_tokens;  // drafter pairs not fed yet: x_{t+1} ...
  torch::Tensor pending_hidden;         // ... and h_t, [m, H]
  bool finished = false;
  std::vector<torch::Tensor> draft_probs;  // sampled drafts: the distribution of each draft
};

SpeculativeEngine::SpeculativeEngine(models::Transformer target, Drafter drafter,
                                     const SpeculativeEngineOptions& options)
    : target_(std::move(target)), drafter_(std::move(drafter)), options_(options) {}

Result<std::unique_ptr<SpeculativeEngine>> SpeculativeEngine::Create(
    models::Transformer target, Drafter drafter, const SpeculativeEngineOptions& options) {
  RETURN_NOT_OK(drafter->CheckFits(target->config()));
  if (options.sample_drafts && !options.strategy.is_chain()) {
    return InvalidArgument("SpeculativeEngine: sampled drafts need a chain strategy (top-k 1), not " +
                           options.strategy.Name());
  }
  if (options.max_batch_size < 1 || options.max_sequence_length < 2) {
    return InvalidArgument("SpeculativeEngine: max_batch_size >= 1, max_sequence_length >= 2");
  }
  try {
    target->to(options.device, options.dtype);
    drafter->to(options.device, options.dtype);
    target->eval();
    drafter->eval();
    std::unique_ptr<SpeculativeEngine> e(new SpeculativeEngine(target, drafter, options));
    // Room for the largest tree beyond the last committed position.
    const int64_t length = options.max_sequence_length + 64 + 4 * options.strategy.num_tokens;
    e->target_cache_ = std::make_unique<models::KvCache>(models::KvCacheOptions::ForModel(
        target->config(), options.max_batch_size, length, options.dtype, options.device));
    e->drafter_cache_ = std::make_unique<models::KvCache>(
        drafter->CacheOptions(options.max_batch_size, length + 4 * options.strategy.num_tokens *
                                                               options.strategy.top_k,
                              options.dtype, options.device));
    return e;
  } catch (const c10::Error& err) {
    return Internal(std::string("SpeculativeEngine: ") + err.what_without_backtrace());
  }
}

namespace {
models::SamplingParams ParamsOf(const models::Request& r) { return {r.temperature, r.top_k, r.top_p}; }
}  // namespace

Status SpeculativeEngine::Prefill(Sequence* seq) {
  const auto& prompt = seq->request.prompt;
  const int64_t n = static_cast<int64_t>(prompt.size());
  torch::Tensor tokens = torch::tensor(prompt, torch::kInt64).unsqueeze(0).to(options_.device);
  models::ForwardOutput out = target_->Forward(
      tokens, models::BatchLayout::Make({0}, {n}, n, {seq->target_slot}, options_.device),
      target_cache_.get(), models::ForwardOptions().return_hidden(true));
  RETURN_NOT_OK(target_cache_->SetLength(seq->target_slot, n));
  models::SampledTokens first = models::Sample(out.logits[0].narrow(0, n - 1, 1),
                                               {ParamsOf(seq->request)}, {seq->request.seed}, {0});
  seq->context = prompt;
  seq->context.push_back(first.tokens[0]);
  seq->result.tokens.push_back(first.tokens[0]);
  seq->result.logprobs.push_back(first.logprobs[0]);
  seq->pending_tokens.assign(prompt.begin() + 1, prompt.end());
  seq->pending_tokens.push_back(first.tokens[0]);
  seq->pending_hidden = out.hidden[0];
  return Status::OK();
}

DraftTree SpeculativeEngine::Draft(Sequence* seq) {
  const int64_t root = seq->context.back();
  if (options_.draft_oracle) {
    auto path_context = [&](const DraftTree& cand, int64_t node) {
      std::vector<int64_t> path;
      for (int64_t j = node; j > 0; j = cand.parents[j]) path.insert(path.begin(), cand.tokens[j]);
      std::vector<int64_t> ctx = seq->context;
      ctx.insert(ctx.end(), path.begin(), path.end());
      return ctx;
    };
    ExpandFn expand = [&](const DraftTree& cand, const std::vector<int64_t>& nodes) {
      std::vector<torch::Tensor> rows;
      for (int64_t node : nodes) rows.push_back(options_.draft_oracle(path_context(cand, node)));
      return torch::stack(rows);
    };
    torch::Tensor root_logprobs = options_.draft_oracle(seq->context);
    if (options_.sample_drafts) return SampleChain(seq, root_logprobs, expand);
    return BuildDraftTree(options_.strategy, root, root_logprobs, expand);
  }
  // Catch up: feed the pending pairs; the last one's output drafts the root's children.
  const int64_t slot = seq->drafter_slot;
  const int64_t start = drafter_cache_->length(slot);
  const int64_t m = static_cast<int64_t>(seq->pending_tokens.size());
  torch::Tensor tokens =
      torch::tensor(seq->pending_tokens, torch::kInt64).unsqueeze(0).to(options_.device);
  torch::Tensor h = drafter_->Forward(
      target_, tokens, seq->pending_hidden.unsqueeze(0),
      models::BatchLayout::Make({start}, {m}, m, {slot}, options_.device), drafter_cache_.get());
  const int64_t base = start + m;  // drafter positions 0 .. base - 1 are committed
  CHECK_OK(drafter_cache_->SetLength(slot, base));
  seq->pending_tokens.clear();
  torch::Tensor root_hidden = h[0][m - 1];
  std::map<int64_t, torch::Tensor> predicted;  // candidate node -> predicted hidden
  std::map<int64_t, int64_t> written;          // candidate node -> drafter cache position
  predicted[0] = root_hidden;
  ExpandFn expand = [&](const DraftTree& cand, const std::vector<int64_t>& nodes) {
    const int64_t k = static_cast<int64_t>(nodes.size());
    const int64_t first = base + static_cast<int64_t>(written.size());
    std::vector<int64_t> toks, rotary;
    std::vector<torch::Tensor> hidden;
    for (int64_t node : nodes) {
      toks.push_back(cand.tokens[node]);
      hidden.push_back(predicted.at(cand.parents[node]));
      rotary.push_back(base - 1 + cand.depths[node]);
    }
    models::BatchLayout layout =
        models::BatchLayout::Make({first}, {k}, k, {slot}, options_.device);
    torch::Tensor mask = torch::zeros({1, 1, k, layout.context_length}, torch::kBool);
    mask.narrow(3, 0, base).fill_(true);
    for (int64_t j = 0; j < k; ++j) {
      mask[0][0][j][first + j] = true;
      for (int64_t a = cand.parents[nodes[j]]; a > 0; a = cand.parents[a]) {
        mask[0][0][j][written.at(a)] = true;
      }
    }
    layout.mask = mask.to(options_.device);
    for (int64_t j = 0; j < k; ++j) written[nodes[j]] = first + j;
    torch::Tensor out = drafter_->Forward(
        target_, torch::tensor(toks, torch::kInt64).unsqueeze(0).to(options_.device),
        torch::stack(hidden).unsqueeze(0), layout, drafter_cache_.get(),
        torch::tensor(rotary, torch::kInt64).unsqueeze(0).to(options_.device))[0];
    for (int64_t j = 0; j < k; ++j) predicted[nodes[j]] = out[j];
    return torch::log_softmax(Drafter::Impl::Logits(target_, out), -1);
  };
  torch::Tensor root_logprobs = torch::log_softmax(Drafter::Impl::Logits(target_, root_hidden), -1);
  DraftTree tree = options_.sample_drafts
                       ? SampleChain(seq, root_logprobs, expand)
                       : BuildDraftTree(options_.strategy, root, root_logprobs, expand);
  CHECK_OK(drafter_cache_->SetLength(slot, base));  // drop the drafted nodes
  return tree;
}

DraftTree SpeculativeEngine::SampleChain(Sequence* seq, const torch::Tensor& root_logprobs,
                                         const ExpandFn& expand) {
  DraftTree chain = DraftTree::Root(seq->context.back());
  seq->draft_probs.clear();
  torch::Tensor logprobs = root_logprobs.reshape({1, -1});
  const int64_t n = options_.strategy.max_draft_tokens();
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor q = models::ProcessedLogProbs(logprobs, {ParamsOf(seq->request)});
    const double u = models::CounterUniform(seq->request.seed, seq->counter++, kDraftStream);
    const int64_t node = chain.Add(i, models::SampleFromLogProbs(q, {u}).tokens[0]);
    seq->draft_probs.push_back(q[0].exp());
    if (i + 1 < n) logprobs = expand(chain, {node}).reshape({1, -1});
  }
  return chain;
}

Status SpeculativeEngine::Step(std::vector<Sequence*>& running) {
  std::vector<DraftTree> trees;
  std::vector<int64_t> starts, slots;
  for (Sequence* seq : running) {
    trees.push_back(Draft(seq));
    starts.push_back(target_cache_->length(seq->target_slot));
    slots.push_back(seq->target_slot);
  }
  TreeBatch batch = MakeTreeBatch(trees, starts, slots, options_.device);
  models::ForwardOutput out = TreeForward(target_, batch, target_cache_.get());
  for (size_t b = 0; b < running.size(); ++b) {
    Sequence* seq = running[b];
    const DraftTree& tree = trees[b];
    const int64_t n = tree.size();
    torch::Tensor lp = models::ProcessedLogProbs(out.logits[b].narrow(0, 0, n),
                                                 std::vector<models::SamplingParams>(n, ParamsOf(seq->request)));
    VerifyResult r;
    if (options_.sample_drafts) {
      std::vector<int64_t> drafts(tree.tokens.begin() + 1, tree.tokens.end());
      torch::Tensor q = drafts.empty() ? torch::Tensor() : torch::stack(seq->draft_probs);
      r = VerifySampledChain(drafts, q, lp, seq->request.seed, &seq->counter);
    } else {
      r = VerifyTree(tree, lp, seq->request.seed, &seq->counter);
    }
    stats_.steps++;
    stats_.draft_tokens += tree.num_draft_tokens();
    stats_.accepted_tokens += r.num_accepted();
    CompactAcceptedPath(target_cache_.get(), seq->target_slot, starts[b], r.accepted_nodes);
    RETURN_NOT_OK(target_cache_->SetLength(seq->target_slot, starts[b] + 1 + r.num_accepted()));
    // Drafter pairs for the next step: hidden of the root and accepted nodes, tokens after them.
    std::vector<int64_t> rows{0};
    rows.insert(rows.end(), r.accepted_nodes.begin(), r.accepted_nodes.end());
    torch::Tensor row_index = torch::tensor(rows, torch::kInt64).to(options_.device);
    seq->pending_hidden = out.hidden[b].index_select(0, row_index);
    seq->pending_tokens = r.tokens;
    torch::Tensor token_lp = lp.index_select(0, row_index)
                                 .gather(1, torch::tensor(r.tokens, torch::kInt64).view({-1, 1}).to(lp.device()))
                                 .cpu();
    const auto& req = seq->request;
    for (size_t i = 0; i < r.tokens.size() && !seq->finished; ++i) {
      seq->context.push_back(r.tokens[i]);
      seq->result.tokens.push_back(r.tokens[i]);
      seq->result.logprobs.push_back(token_lp[i][0].item<float>());
      const bool stop = std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(),
                                  r.tokens[i]) != req.stop_token_ids.end();
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
  return Status::OK();
}

Result<std::vector<models::RequestResult>> SpeculativeEngine::Generate(
    const std::vector<models::Request>& requests) {
  std::vector<Sequence> seqs(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    if (r.prompt.empty() || static_cast<int64_t>(r.prompt.size()) >= options_.max_sequence_length) {
      return InvalidArgument("request " + std::to_string(i) + ": prompt empty or too long");
    }
    seqs[i].request = r;
    seqs[i].result.id = i + 1;
  }
  torch::NoGradGuard no_grad;
  try {
    for (size_t begin = 0; begin < seqs.size(); begin += options_.max_batch_size) {
      const size_t end = std::min(seqs.size(), begin + static_cast<size_t>(options_.max_batch_size));
      std::vector<Sequence*> running;
      for (size_t i = begin; i < end; ++i) {
        Sequence* seq = &seqs[i];
        ASSIGN_OR_RETURN(seq->target_slot, target_cache_->AllocateSlot());
        ASSIGN_OR_RETURN(seq->drafter_slot, drafter_cache_->AllocateSlot());
        RETURN_NOT_OK(drafter_cache_->SetLength(seq->drafter_slot, 0));
        RETURN_NOT_OK(Prefill(seq));
        const auto& req = seq->request;
        const int64_t tok = seq->context.back();
        if (std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(), tok) !=
            req.stop_token_ids.end()) {
          seq->finished = true;
          seq->result.finish_reason = models::FinishReason::kStop;
        } else if (req.max_new_tokens <= 1 ||
                   static_cast<int64_t>(seq->context.size()) >= options_.max_sequence_length) {
          seq->finished = true;
        }
        running.push_back(seq);
      }
      while (true) {
        std::vector<Sequence*> active;
        for (Sequence* s : running) {
          if (!s->finished) active.push_back(s);
        }
        if (active.empty()) break;
        RETURN_NOT_OK(Step(active));
      }
      for (Sequence* s : running) {
        RETURN_NOT_OK(target_cache_->FreeSlot(s->target_slot));
        RETURN_NOT_OK(drafter_cache_->FreeSlot(s->drafter_slot));
      }
    }
  } catch (const c10::Error& e) {
    return Internal(std::string("SpeculativeEngine: ") + e.what_without_backtrace());
  }
  std::vector<models::RequestResult> out;
  for (auto& s : seqs) out.push_back(std::move(s.result));
  return out;
}

}  // namespace tlt::speculative
