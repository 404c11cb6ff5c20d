// SpeculativeEngine: the speculative decode step (drafting, tree verification); the drafter's
// catch-up is in drafter_catch_up.cc.
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <optional>

#include "gpu/trace_range.h"
#include "models/sampling.h"
#include "speculative/device_draft.h"
#include "speculative/engine_sequence.h"
#include "speculative/speculative_engine.h"
#include "speculative/verify.h"

namespace tlt::speculative {
namespace {

// The k largest log-probs (log_softmax over the last dimension) and their ids, on the host,
// with one device-to-host copy (values and ids travel packed as float64; ids are exact there).
std::pair<torch::Tensor, torch::Tensor> TopKOnHost(const torch::Tensor& logits, int64_t k) {
  auto top = torch::log_softmax(logits, -1).topk(k);
  const torch::Tensor packed =
      torch::cat({std::get<0>(top).to(torch::kFloat64), std::get<1>(top).to(torch::kFloat64)}, -1)
          .cpu();
  return {packed.narrow(-1, 0, k), packed.narrow(-1, k, k).to(torch::kInt64)};
}

}  // namespace

DraftTree SpeculativeEngine::Draft(Sequence* seq, const Strategy& strategy,
                                   const torch::Tensor& root_hidden) {
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
    if (options_.sample_drafts) return SampleChain(seq, strategy, root_logprobs, expand);
    return BuildDraftTree(strategy, root, root_logprobs, expand);
  }
  const int64_t slot = seq->drafter_slot;
  const int64_t base = drafter_cache_->length(slot);  // drafter positions 0 .. base - 1 are fed
  std::map<int64_t, torch::Tensor> predicted;         // candidate node -> predicted hidden
  std::map<int64_t, int64_t> written;                 // candidate node -> drafter cache position
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
  DraftTree tree = options_.sample_drafts ? SampleChain(seq, strategy, root_logprobs, expand)
                                          : BuildDraftTree(strategy, root, root_logprobs, expand);
  CHECK_OK(drafter_cache_->SetLength(slot, base));  // drop the drafted nodes
  return tree;
}

std::vector<DraftTree> SpeculativeEngine::DraftBatch(const std::vector<Sequence*>& batch,
                                                     const Strategy& strategy,
                                                     const std::vector<torch::Tensor>& root_hidden,
                                                     const torch::Tensor& root_logits) {
  const int64_t B = static_cast<int64_t>(batch.size());
  const int64_t V = target_->config().vocab_size, k = std::min(strategy.top_k, V);
#ifdef TLT_SPECULATIVE_DEVICE_DRAFT
  if (drafter_decoder_ && options_.device_draft) {
    std::vector<DeviceDraftRequest> requests;
    for (Sequence* seq : batch) {
      requests.push_back(
          {seq->context.back(), drafter_cache_->length(seq->drafter_slot), seq->drafter_slot});
    }
    if (DeviceDraftFits(strategy, V, requests, drafter_decoder_->max_rows(),
                        drafter_cache_->options().max_length)) {
      const torch::Tensor roots = torch::stack(root_hidden);
      const torch::Tensor logits =
          root_logits.defined() ? root_logits : Drafter::Impl::Logits(target_, roots);
      if (!device_draft_) {
        device_draft_ =
            std::make_shared<DeviceDraftLoop>(drafter_decoder_.get(), options_.cuda_graphs);
      }
      auto trees = device_draft_->Draft(strategy, requests, roots, logits);
      TORCH_CHECK(trees.ok(), "drafting: ", trees.status().ToString());
      for (const DeviceDraftRequest& r : requests) {
        CHECK_OK(drafter_cache_->SetLength(r.slot, r.base));  // drop the drafted nodes
      }
      return std::move(trees).value();
    }
  }
#endif
  std::vector<int64_t> base(B);
  std::vector<std::map<int64_t, torch::Tensor>> predicted(B);  // candidate node -> hidden
  std::vector<std::map<int64_t, int64_t>> written(B);          // candidate node -> cache position
  std::vector<DraftTreeBuilder> builders;
  {
    torch::Tensor roots = torch::stack(root_hidden);  // [B, H]
    auto [values, ids] =
        TopKOnHost(root_logits.defined() ? root_logits : Drafter::Impl::Logits(target_, roots), k);
    for (int64_t b = 0; b < B; ++b) {
      base[b] = drafter_cache_->length(batch[b]->drafter_slot);
      predicted[b][0] = root_hidden[b];
      builders.emplace_back(strategy, batch[b]->context.back(), values[b], ids[b]);
    }
  }
  while (true) {
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < B; ++b) {
      if (!builders[b].done()) rows.push_back(b);
    }
    if (rows.empty()) break;
    const int64_t R = static_cast<int64_t>(rows.size());
    std::vector<int64_t> first(R), count(R), slots(R);
    int64_t T = 1;
    bool fused = drafter_decoder_ != nullptr;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t b = rows[r];
      first[r] = base[b] + static_cast<int64_t>(written[b].size());
      count[r] = static_cast<int64_t>(builders[b].frontier().size());
      slots[r] = batch[b]->drafter_slot;
      T = std::max(T, count[r]);
      fused = fused && first[r] + count[r] - base[b] <= 64;
    }
    if (fused) {
      // One row per frontier node: written after the nodes drafted so far, rotated at its depth,
      // seeing the fed pairs and its drafted ancestors (bit = cache position - base).
      std::vector<models::DecodeRow> decode_rows;
      std::vector<torch::Tensor> inputs;
      for (int64_t r = 0; r < R; ++r) {
        const int64_t b = rows[r];
        const DraftTree& cand = builders[b].candidates();
        const std::vector<int64_t>& nodes = builders[b].frontier();
        for (int64_t j = 0; j < count[r]; ++j) {
          const int64_t node = nodes[j];
          models::DecodeRow row;
          row.token = cand.tokens[node];
          row.position = first[r] + j;
          row.slot = slots[r];
          row.rotary_position = base[b] - 1 + cand.depths[node];
          row.tree_base = base[b];
          for (int64_t a = cand.parents[node]; a > 0; a = cand.parents[a]) {
            row.tree_mask |= 1ull << (written[b].at(a) - base[b]);
          }
          decode_rows.push_back(row);
          inputs.push_back(predicted[b].at(cand.parents[node]));
        }
        for (int64_t j = 0; j < count[r]; ++j) written[b][nodes[j]] = first[r] + j;
      }
      auto stepped = drafter_decoder_->Forward(decode_rows, torch::stack(inputs));
      TORCH_CHECK(stepped.ok(), "drafter step: ", stepped.status().ToString());
      torch::Tensor out = stepped->hidden.clone();  // the decoder's buffers change next call
      auto [values, ids] = TopKOnHost(stepped->logits, k);
      int64_t offset = 0;
      for (int64_t r = 0; r < R; ++r) {
        const int64_t b = rows[r];
        const std::vector<int64_t> nodes = builders[b].frontier();
        for (int64_t j = 0; j < count[r]; ++j) predicted[b][nodes[j]] = out[offset + j];
        builders[b].ExpandTopK(values.narrow(0, offset, count[r]), ids.narrow(0, offset, count[r]));
        offset += count[r];
      }
      continue;
    }
    models::BatchLayout layout = models::BatchLayout::Make(first, count, T, slots, options_.device);
    torch::Tensor mask = torch::zeros({R, 1, T, layout.context_length}, torch::kBool);
    torch::Tensor tokens = torch::zeros({R, T}, torch::kInt64);
    torch::Tensor rotary = torch::zeros({R, T}, torch::kInt64);
    std::vector<torch::Tensor> hidden;
    auto m = mask.accessor<bool, 4>();
    auto tok = tokens.accessor<int64_t, 2>();
    auto rot = rotary.accessor<int64_t, 2>();
    for (int64_t r = 0; r < R; ++r) {
      const int64_t b = rows[r];
      const DraftTree& cand = builders[b].candidates();
      const std::vector<int64_t>& nodes = builders[b].frontier();
      for (int64_t j = 0; j < T; ++j) {
        if (j >= count[r]) {  // padding: attends to position 0, writes nothing
          m[r][0][j][0] = true;
          hidden.push_back(predicted[b].at(0));
          continue;
        }
        const int64_t node = nodes[j];
        tok[r][j] = cand.tokens[node];
        rot[r][j] = base[b] - 1 + cand.depths[node];
        hidden.push_back(predicted[b].at(cand.parents[node]));
        for (int64_t p = 0; p < base[b]; ++p) m[r][0][j][p] = true;
        m[r][0][j][first[r] + j] = true;
        for (int64_t a = cand.parents[node]; a > 0; a = cand.parents[a]) {
          m[r][0][j][written[b].at(a)] = true;
        }
      }
      for (int64_t j = 0; j < count[r]; ++j) written[b][nodes[j]] = first[r] + j;
    }
    layout.mask = mask.to(options_.device);
    torch::Tensor out =
        drafter_->Forward(target_, tokens.to(options_.device),
                          torch::stack(hidden).view({R, T, -1}), layout, drafter_cache_.get(),
                          rotary.to(options_.device));  // [R, T, H]
    auto [values, ids] = TopKOnHost(Drafter::Impl::Logits(target_, out), k);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t b = rows[r];
      const std::vector<int64_t> nodes = builders[b].frontier();
      for (int64_t j = 0; j < count[r]; ++j) predicted[b][nodes[j]] = out[r][j];
      builders[b].ExpandTopK(values[r].narrow(0, 0, count[r]), ids[r].narrow(0, 0, count[r]));
    }
  }
  std::vector<DraftTree> trees;
  for (int64_t b = 0; b < B; ++b) {
    CHECK_OK(drafter_cache_->SetLength(batch[b]->drafter_slot, base[b]));  // drop drafted nodes
    trees.push_back(builders[b].Finish());
  }
  return trees;
}

DraftTree SpeculativeEngine::SampleChain(Sequence* seq, const Strategy& strategy,
                                         const torch::Tensor& root_logprobs,
                                         const ExpandFn& expand) {
  DraftTree chain = DraftTree::Root(seq->context.back());
  seq->draft_probs.clear();
  torch::Tensor logprobs = root_logprobs.reshape({1, -1});
  const int64_t n = strategy.max_draft_tokens();
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor q = models::ProcessedLogProbs(logprobs, {ParamsOf(seq->request)});
    const double u = models::CounterUniform(seq->request.seed, seq->counter++, kDraftStream);
    const int64_t node = chain.Add(i, models::SampleFromLogProbs(q, {u}).tokens[0]);
    seq->draft_probs.push_back(q[0].exp());
    if (i + 1 < n) logprobs = expand(chain, {node}).reshape({1, -1});
  }
  return chain;
}

Status SpeculativeEngine::VerifyForward(const std::vector<DraftTree>& trees,
                                        const std::vector<int64_t>& starts,
                                        const std::vector<int64_t>& slots,
                                        torch::Tensor* logits, torch::Tensor* hidden) {
  const int64_t B = static_cast<int64_t>(trees.size());
  bool fused = decoder_ != nullptr && options_.fused_verify;
  for (const DraftTree& tree : trees) fused = fused && tree.size() <= 64;
  if (!fused) {
    TreeBatch tree_batch = MakeTreeBatch(trees, starts, slots, options_.device);
    models::ForwardOutput out = TreeForward(target_, tree_batch, target_cache_.get());
    std::vector<torch::Tensor> l, h;  // [B, T, ...] padded to the largest tree
    for (int64_t b = 0; b < B; ++b) {
      l.push_back(out.logits[b].narrow(0, 0, trees[b].size()));
      h.push_back(out.hidden[b].narrow(0, 0, trees[b].size()));
    }
    *logits = B == 1 ? l[0] : torch::cat(l, 0);
    *hidden = B == 1 ? h[0] : torch::cat(h, 0);
    return Status::OK();
  }
  // Node i of request b is row (b, i): written at starts[b] + i, rotated at its depth, seeing
  // the cache before starts[b] and its ancestors (bit j = node j).
  std::vector<models::DecodeRow> rows;
  for (int64_t b = 0; b < B; ++b) {
    const DraftTree& tree = trees[b];
    for (int64_t i = 0; i < tree.size(); ++i) {
      models::DecodeRow row;
      row.token = tree.tokens[i];
      row.position = starts[b] + i;
      row.slot = slots[b];
      row.rotary_position = starts[b] + tree.depths[i];
      row.tree_base = starts[b];
      for (int64_t a = tree.parents[i]; a >= 0; a = tree.parents[a]) row.tree_mask |= 1ull << a;
      rows.push_back(row);
    }
  }
  ASSIGN_OR_RETURN(models::StepTensors out, decoder_->Forward(rows));
  *logits = out.logits;  // rows in request order already
  *hidden = out.hidden;
  return Status::OK();
}

Status SpeculativeEngine::SpeculativeDecode(std::vector<Sequence*>& batch, int64_t arm) {
  const int64_t B = static_cast<int64_t>(batch.size());
  const Strategy strategy = bandit_ ? bandit_->strategies()[arm] : options_.strategy;
  Synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  auto lap_start = t0;
  auto lap = [&](const char* phase) {  // phase_timing: the phase just ended
    if (!options_.phase_timing) return;
    Synchronize();
    const auto now = std::chrono::steady_clock::now();
    stats_.phase_seconds[phase] += std::chrono::duration<double>(now - lap_start).count();
    lap_start = now;
  };
  std::vector<torch::Tensor> root_hidden(batch.size());
  torch::Tensor root_logits;  // the roots' draft logits from the catch-up step, when it gives them
  if (!options_.draft_oracle) {
    {
      gpu::TraceRange range("tlt_catch_up");
      root_hidden = CatchUpDrafter(batch, /*keep_last=*/false, &root_logits);
    }
    for (const torch::Tensor& h : root_hidden) {
      // No pending pair (only after a failed step consumed them): decode plainly this once,
      // which leaves a new pair for the next SD step.
      if (!h.defined()) return PlainDecode(batch);
    }
  }
  lap("catch_up");
  std::vector<DraftTree> trees;
  std::optional<gpu::TraceRange> draft_range(std::in_place, "tlt_draft");
  if (options_.draft_oracle || options_.sample_drafts) {
    for (size_t b = 0; b < batch.size(); ++b)
      trees.push_back(Draft(batch[b], strategy, root_hidden[b]));
  } else {
    trees = DraftBatch(batch, strategy, root_hidden, root_logits);
  }
  draft_range.reset();
  if (options_.draft_observer) options_.draft_observer(trees);
  std::vector<int64_t> starts, slots;
  for (Sequence* seq : batch) {
    starts.push_back(target_cache_->length(seq->target_slot));
    slots.push_back(seq->target_slot);
  }
  Synchronize();
  lap("draft");
  const auto t1 = std::chrono::steady_clock::now();
  // Per request: float32 logits [n, V] and hidden states [n, H] of its n tree nodes.
  torch::Tensor all_logits, all_hidden;
  {
    gpu::TraceRange range("tlt_verify");
    RETURN_NOT_OK(VerifyForward(trees, starts, slots, &all_logits, &all_hidden));
  }
  lap("verify_forward");
  std::vector<int64_t>& histogram = stats_.accepted_histogram[strategy.Name()];
  if (histogram.size() < static_cast<size_t>(strategy.max_draft_tokens() + 1)) {
    histogram.resize(strategy.max_draft_tokens() + 1, 0);
  }
  // The processed target distributions of every tree node of the batch, in one call.
  std::vector<models::SamplingParams> row_params;
  std::vector<int64_t> offset(B + 1, 0);
  bool all_greedy = !options_.sample_drafts;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = trees[b].size();
    row_params.insert(row_params.end(), n, ParamsOf(batch[b]->request));
    offset[b + 1] = offset[b] + n;
    all_greedy = all_greedy && batch[b]->request.temperature <= 0;
  }
  // Greedy batches skip the processing (a sort over the vocabulary per node): a greedy row's
  // processed distribution is one-hot on the logits' argmax, so the tokens it accepts have
  // log-prob 0.
  const torch::Tensor all_lp =
      all_greedy ? torch::Tensor() : models::ProcessedLogProbs(all_logits, row_params);
  std::vector<VerifyResult> results(B);
  if (all_greedy) {
    // Greedy: VerifyTree reduces to following the children equal to each node's argmax (one
    // device-to-host copy for the batch; the counters advance as VerifyTree's would: one
    // uniform a visited node).
    const torch::Tensor argmax = all_logits.argmax(-1).cpu().contiguous();
    const int64_t* best = argmax.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      results[b] = VerifyGreedyTree(trees[b], best + offset[b], &batch[b]->counter);
    }
  } else {
    for (int64_t b = 0; b < B; ++b) {
      Sequence* seq = batch[b];
      const DraftTree& tree = trees[b];
      const torch::Tensor lp = all_lp.narrow(0, offset[b], tree.size());
      if (options_.sample_drafts) {
        std::vector<int64_t> drafts(tree.tokens.begin() + 1, tree.tokens.end());
        torch::Tensor q = drafts.empty() ? torch::Tensor() : torch::stack(seq->draft_probs);
        results[b] = VerifySampledChain(drafts, q, lp, seq->request.seed, &seq->counter);
      } else {
        results[b] = VerifyTree(tree, lp, seq->request.seed, &seq->counter);
      }
    }
  }
  lap("accept");
  // Bookkeeping for the whole batch: one cache compaction, one gather of the kept hidden states
  // (the drafter's next pairs: root and accepted nodes) and one of the tokens' log-probs.
  std::vector<int64_t> copy_slots, copy_src, copy_dst, kept_rows, kept_tokens;
  int64_t gained = 0;
  for (int64_t b = 0; b < B; ++b) {
    const VerifyResult& r = results[b];
    stats_.steps++;
    stats_.draft_tokens += trees[b].num_draft_tokens();
    stats_.accepted_tokens += r.num_accepted();
    histogram[r.num_accepted()]++;
    gained += r.num_accepted() + 1;
    kept_rows.push_back(offset[b]);
    for (size_t i = 0; i < r.accepted_nodes.size(); ++i) {
      copy_slots.push_back(slots[b]);
      copy_src.push_back(starts[b] + r.accepted_nodes[i]);
      copy_dst.push_back(starts[b] + 1 + static_cast<int64_t>(i));
      kept_rows.push_back(offset[b] + r.accepted_nodes[i]);
    }
    kept_tokens.insert(kept_tokens.end(), r.tokens.begin(), r.tokens.end());
  }
  RETURN_NOT_OK(target_cache_->CopyPositions(copy_slots, copy_src, copy_dst));
  const int64_t K = static_cast<int64_t>(kept_rows.size());
  std::vector<int64_t> index(kept_rows);
  index.insert(index.end(), kept_tokens.begin(), kept_tokens.end());
  const torch::Tensor both = torch::tensor(index, torch::kInt64).to(all_logits.device());
  const torch::Tensor rows_t = both.narrow(0, 0, K), tokens_t = both.narrow(0, K, K);
  torch::Tensor kept_hidden;
  if (!options_.draft_oracle) {
    kept_hidden = all_hidden.index_select(0, rows_t.to(all_hidden.device()));
  }
  // Greedy tokens have log-prob 0 (no tensor needed).
  const std::vector<float> zeros(all_greedy ? K : 0, 0.0f);
  const torch::Tensor token_lp = all_greedy ? torch::Tensor()
                                            : all_lp.index_select(0, rows_t)
                                                  .gather(1, tokens_t.view({-1, 1}))
                                                  .to(torch::kFloat32)
                                                  .cpu()
                                                  .contiguous();
  const float* lp_data = all_greedy ? zeros.data() : token_lp.data_ptr<float>();
  int64_t k = 0;
  for (int64_t b = 0; b < B; ++b) {
    Sequence* seq = batch[b];
    const VerifyResult& r = results[b];
    const int64_t n = r.num_accepted() + 1;
    RETURN_NOT_OK(target_cache_->SetLength(seq->target_slot, starts[b] + n));
    if (!options_.draft_oracle) {
      seq->pending_hidden = {{kept_hidden, k, n}};
      seq->pending_tokens = r.tokens;
    }
    Append(seq, r.tokens, std::vector<float>(lp_data + k, lp_data + k + n));
    k += n;
  }
  Synchronize();
  lap("commit");
  const auto t2 = std::chrono::steady_clock::now();
  const double draft = std::chrono::duration<double>(t1 - t0).count();
  const double verify = std::chrono::duration<double>(t2 - t1).count();
  stats_.draft_seconds += draft;
  stats_.verify_seconds += verify;
  stats_.sd_on_steps++;
  if (bandit_) bandit_->Update(B, arm, static_cast<double>(gained) / B, draft + verify);
  return Status::OK();
}

}  // namespace tlt::speculative
