// SpeculativeEngine: the drafter's catch-up, which feeds it the pending (token, target hidden
// state) pairs of every token produced since it last ran (speculative_engine.h).
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "speculative/engine_sequence.h"
#include "speculative/speculative_engine.h"

namespace tlt::speculative {

// Each request's pending hidden states as one [m, H] tensor: a view when it has one chunk,
// else rows of one gather over the distinct source tensors of all requests (plain steps leave
// one chunk per step, shared by the whole batch).
std::vector<torch::Tensor> SpeculativeEngine::PendingHidden(const std::vector<Sequence*>& seqs) {
  std::vector<torch::Tensor> out(seqs.size());
  std::vector<torch::Tensor> sources;
  std::map<const void*, int64_t> offset_of;  // source -> its first row in cat(sources)
  std::vector<int64_t> index;
  std::vector<size_t> gathered;
  int64_t rows = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto& chunks = seqs[i]->pending_hidden;
    if (chunks.size() == 1) {
      out[i] = chunks[0].source.narrow(0, chunks[0].row, chunks[0].count);
      continue;
    }
    gathered.push_back(i);
    for (const auto& c : chunks) {
      auto [it, added] = offset_of.emplace(c.source.unsafeGetTensorImpl(), rows);
      if (added) {
        sources.push_back(c.source);
        rows += c.source.size(0);
      }
      for (int64_t j = 0; j < c.count; ++j) index.push_back(it->second + c.row + j);
    }
  }
  if (gathered.empty()) return out;
  const torch::Tensor all = sources.size() == 1 ? sources[0] : torch::cat(sources, 0);
  const torch::Tensor picked =
      all.index_select(0, torch::tensor(index, torch::kInt64).to(all.device()));
  int64_t at = 0;
  for (size_t i : gathered) {
    const int64_t m = static_cast<int64_t>(seqs[i]->pending_tokens.size());
    out[i] = picked.narrow(0, at, m);
    at += m;
  }
  return out;
}

std::vector<torch::Tensor> SpeculativeEngine::CatchUpDrafter(const std::vector<Sequence*>& batch,
                                                             bool keep_last,
                                                             torch::Tensor* root_logits) {
  auto unfed = [keep_last](const Sequence* seq) {
    return static_cast<int64_t>(seq->pending_tokens.size()) - (keep_last ? 1 : 0);
  };
  while (true) {  // long runs first, a piece at a time
    std::vector<Sequence*> long_runs;
    for (Sequence* seq : batch) {
      if (unfed(seq) > kCatchUpPiece) long_runs.push_back(seq);
    }
    if (long_runs.empty()) break;
    FeedPendingPairs(long_runs, keep_last, kCatchUpPiece, nullptr);
  }
  return FeedPendingPairs(batch, keep_last, kCatchUpPiece, root_logits);
}

std::vector<torch::Tensor> SpeculativeEngine::FeedPendingPairs(const std::vector<Sequence*>& batch,
                                                               bool keep_last, int64_t max_pairs,
                                                               torch::Tensor* root_logits) {
  std::vector<torch::Tensor> out(batch.size());
  std::vector<size_t> rows;
  std::vector<int64_t> start, count, slots;
  int64_t T = 1;
  for (size_t b = 0; b < batch.size(); ++b) {
    const int64_t m = std::min(
        max_pairs,
        static_cast<int64_t>(batch[b]->pending_tokens.size()) - (keep_last ? 1 : 0));
    if (m <= 0) continue;
    rows.push_back(b);
    start.push_back(drafter_cache_->length(batch[b]->drafter_slot));
    count.push_back(m);
    slots.push_back(batch[b]->drafter_slot);
    T = std::max(T, m);
  }
  if (rows.empty()) return out;
  const int64_t R = static_cast<int64_t>(rows.size());
  const int64_t H = target_->config().hidden_size;
  if (drafter_decoder_ && T <= 64) {
    // The pending pairs of each request as one chain of rows (node i sees nodes 0 .. i - 1).
    std::vector<models::DecodeRow> decode_rows;
    std::vector<torch::Tensor> inputs;
    std::vector<Sequence*> fed;
    for (size_t row : rows) fed.push_back(batch[row]);
    const std::vector<torch::Tensor> all = PendingHidden(fed);
    for (int64_t r = 0; r < R; ++r) {
      Sequence* seq = batch[rows[r]];
      inputs.push_back(all[r].narrow(0, 0, count[r]));
      for (int64_t i = 0; i < count[r]; ++i) {
        models::DecodeRow row;
        row.token = seq->pending_tokens[i];
        row.position = start[r] + i;
        row.slot = slots[r];
        row.tree_base = start[r];
        row.tree_mask = i == 0 ? 0 : (~0ull >> (64 - i));
        decode_rows.push_back(row);
      }
    }
    auto stepped = drafter_decoder_->Forward(
        decode_rows, inputs.size() == 1 ? inputs[0] : torch::cat(inputs, 0));
    TORCH_CHECK(stepped.ok(), "drafter step: ", stepped.status().ToString());
    // Each request's newest fed row, gathered once (copies: the decoder's buffers change next
    // call); with every request fed, also their draft logits for the caller.
    std::vector<int64_t> newest;
    for (int64_t r = 0, offset = 0; r < R; offset += count[r], ++r) {
      newest.push_back(offset + count[r] - 1);
    }
    const bool want_logits = root_logits != nullptr && R == static_cast<int64_t>(batch.size());
    torch::Tensor last_hidden;
    if (R == 1) {  // one request: its newest row, copied (no index to send)
      last_hidden = stepped->hidden.narrow(0, newest[0], 1).clone();
      if (want_logits) *root_logits = stepped->logits.narrow(0, newest[0], 1).clone();
    } else {
      const torch::Tensor newest_rows = torch::tensor(newest, torch::kInt64)
                                            .pin_memory()
                                            .to(stepped->hidden.device(), /*non_blocking=*/true);
      last_hidden = stepped->hidden.index_select(0, newest_rows);
      if (want_logits) *root_logits = stepped->logits.index_select(0, newest_rows);
    }
    for (int64_t r = 0; r < R; ++r) {
      Sequence* seq = batch[rows[r]];
      CHECK_OK(drafter_cache_->SetLength(seq->drafter_slot, start[r] + count[r]));
      out[rows[r]] = last_hidden[r];
      seq->pending_tokens.erase(seq->pending_tokens.begin(),
                                seq->pending_tokens.begin() + count[r]);
      const int64_t left = all[r].size(0) - count[r];
      seq->pending_hidden.clear();
      if (left > 0) seq->pending_hidden.push_back({all[r], count[r], left});
    }
    return out;
  }
  torch::Tensor tokens = torch::zeros({R, T}, torch::kInt64);
  torch::Tensor hidden =
      torch::zeros({R, T, H}, torch::TensorOptions().dtype(options_.dtype).device(options_.device));
  std::vector<Sequence*> fed;
  for (size_t row : rows) fed.push_back(batch[row]);
  const std::vector<torch::Tensor> all = PendingHidden(fed);
  for (int64_t r = 0; r < R; ++r) {
    Sequence* seq = batch[rows[r]];
    std::copy(seq->pending_tokens.begin(), seq->pending_tokens.begin() + count[r],
              tokens.data_ptr<int64_t>() + r * T);
    hidden[r].narrow(0, 0, count[r]).copy_(all[r].narrow(0, 0, count[r]));
  }
  models::BatchLayout layout = models::BatchLayout::Make(start, count, T, slots, options_.device);
  torch::Tensor h =
      drafter_->Forward(target_, tokens.to(options_.device), hidden, layout, drafter_cache_.get());
  for (int64_t r = 0; r < R; ++r) {
    Sequence* seq = batch[rows[r]];
    CHECK_OK(drafter_cache_->SetLength(seq->drafter_slot, start[r] + count[r]));
    out[rows[r]] = h[r][count[r] - 1];
    seq->pending_tokens.erase(seq->pending_tokens.begin(), seq->pending_tokens.begin() + count[r]);
    const int64_t left = all[r].size(0) - count[r];
    seq->pending_hidden.clear();
    if (left > 0) seq->pending_hidden.push_back({all[r], count[r], left});
  }
  return out;
}

}  // namespace tlt::speculative
