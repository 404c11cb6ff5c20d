// FusedPrefill (cuda_decoder.h): prompts as chains of tree rows through CudaDecoder::Forward.
// Uses only the CudaDecoder interface, so it compiles without CUDA (where no decoder exists).
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>

#include "models/cuda_decoder.h"

namespace tlt::models {
namespace {

constexpr int64_t kChunk = 64;  // tree rows see at most 64 positions from their base

// One step's rows: for each prompt with tokens left, its next chunk, while they fit max_rows.
struct Plan {
  std::vector<int64_t> prompt, offset, count;  // per chunk in this step
};

std::vector<Plan> MakePlans(const std::vector<int64_t>& lengths, int64_t max_rows) {
  std::vector<Plan> plans;
  std::vector<int64_t> done(lengths.size(), 0);
  while (true) {
    Plan plan;
    int64_t rows = 0;
    for (size_t b = 0; b < lengths.size(); ++b) {
      const int64_t n = std::min(kChunk, lengths[b] - done[b]);
      if (n <= 0 || rows + n > max_rows) continue;
      plan.prompt.push_back(static_cast<int64_t>(b));
      plan.offset.push_back(done[b]);
      plan.count.push_back(n);
      done[b] += n;
      rows += n;
    }
    if (plan.prompt.empty()) break;
    plans.push_back(std::move(plan));
  }
  return plans;
}

}  // namespace

int64_t FusedPrefillSteps(const CudaDecoder& decoder, const std::vector<int64_t>& lengths) {
  if (decoder.max_rows() < kChunk) return INT64_MAX;
  return static_cast<int64_t>(MakePlans(lengths, decoder.max_rows()).size());
}

Result<PrefillOutput> FusedPrefill(CudaDecoder& decoder,
                                   const std::vector<std::vector<int64_t>>& prompts,
                                   const std::vector<int64_t>& starts,
                                   const std::vector<int64_t>& slots, bool all_hidden) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  if (starts.size() != prompts.size() || slots.size() != prompts.size()) {
    return InvalidArgument("FusedPrefill: prompts, starts and slots differ in size");
  }
  if (decoder.max_rows() < kChunk) {
    return InvalidArgument("FusedPrefill: the decoder takes fewer than 64 rows a step");
  }
  std::vector<int64_t> lengths;
  for (const auto& p : prompts) {
    if (p.empty()) return InvalidArgument("FusedPrefill: empty prompt");
    lengths.push_back(static_cast<int64_t>(p.size()));
  }
  PrefillOutput out;
  std::vector<torch::Tensor> last_logits(B), last_hidden(B);
  std::vector<std::vector<torch::Tensor>> hidden_parts(B);
  for (const Plan& plan : MakePlans(lengths, decoder.max_rows())) {
    std::vector<DecodeRow> rows;
    for (size_t c = 0; c < plan.prompt.size(); ++c) {
      const int64_t b = plan.prompt[c];
      for (int64_t i = 0; i < plan.count[c]; ++i) {
        DecodeRow row;
        row.token = prompts[b][plan.offset[c] + i];
        row.position = starts[b] + plan.offset[c] + i;
        row.slot = slots[b];
        row.tree_base = starts[b] + plan.offset[c];
        row.tree_mask = i == 0 ? 0 : (~0ull >> (64 - i));
        rows.push_back(row);
      }
    }
    ASSIGN_OR_RETURN(StepTensors step, decoder.Forward(rows));
    int64_t r = 0;
    for (size_t c = 0; c < plan.prompt.size(); ++c) {
      const int64_t b = plan.prompt[c], n = plan.count[c];
      // Copies: the step's tensors are the decoder's buffers, rewritten by the next step.
      if (all_hidden) hidden_parts[b].push_back(step.hidden.narrow(0, r, n).clone());
      if (plan.offset[c] + n == lengths[b]) {
        last_logits[b] = step.logits[r + n - 1].clone();
        last_hidden[b] = step.hidden[r + n - 1].clone();
      }
      r += n;
    }
  }
  out.last_logits = torch::stack(last_logits);
  out.last_hidden = torch::stack(last_hidden);
  if (all_hidden) {
    for (auto& parts : hidden_parts) {
      out.all_hidden.push_back(parts.size() == 1 ? parts[0] : torch::cat(parts, 0));
    }
  }
  return out;
}

}  // namespace tlt::models
