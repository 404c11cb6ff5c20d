#include "speculative/strategy.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <numeric>
#include <sstream>

namespace tlt::speculative {

std::string Strategy::Name() const {
  return std::to_string(steps) + "_" + std::to_string(top_k) + "_" + std::to_string(num_tokens);
}

Result<Strategy> ParseStrategy(const std::string& text) {
  const char* kFields[] = {"steps", "top-k", "tokens"};
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, '_')) parts.push_back(part);
  if (!text.empty() && text.back() == '_') parts.push_back("");
  if (parts.size() != 3) {
    return InvalidArgument("strategy '" + text +
                           "': expected STEPS_TOPK_TOKENS, three positive integers joined by '_' "
                           "(for example 8_4_16)");
  }
  int64_t values[3];
  for (int i = 0; i < 3; ++i) {
    const std::string& p = parts[i];
    if (p.empty() || p.size() > 6 ||
        !std::all_of(p.begin(), p.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return InvalidArgument("strategy '" + text + "': " + kFields[i] + " '" + p +
                             "' is not a positive integer");
    }
    values[i] = std::stoll(p);
    if (values[i] <= 0) {
      return InvalidArgument("strategy '" + text + "': " + kFields[i] + " must be at least 1");
    }
  }
  Strategy s{values[0], values[1], values[2]};
  const int64_t candidates = s.top_k + (s.steps - 1) * s.top_k * s.top_k;
  if (s.num_tokens > candidates) {
    return InvalidArgument("strategy '" + text + "': " + std::to_string(s.num_tokens) +
                           " tokens but " + std::to_string(s.steps) + " steps of top-" +
                           std::to_string(s.top_k) + " yield only " + std::to_string(candidates) +
                           " candidates");
  }
  return s;
}

DraftTreeBuilder::DraftTreeBuilder(const Strategy& strategy, int64_t root_token,
                                   const torch::Tensor& root_logprobs)
    : DraftTreeBuilder(strategy, root_token,
                       std::get<0>(root_logprobs.reshape({-1}).topk(
                           std::min<int64_t>(strategy.top_k, root_logprobs.numel()))),
                       std::get<1>(root_logprobs.reshape({-1}).topk(
                           std::min<int64_t>(strategy.top_k, root_logprobs.numel())))) {}

DraftTreeBuilder::DraftTreeBuilder(const Strategy& strategy, int64_t root_token,
                                   const torch::Tensor& top_values, const torch::Tensor& top_ids)
    : strategy_(strategy), candidates_(DraftTree::Root(root_token)) {
  max_depth_ = strategy.is_chain() ? strategy.max_draft_tokens() : strategy.steps;
  torch::Tensor v = top_values.reshape({-1}).to(torch::kFloat64).cpu().contiguous();
  torch::Tensor i = top_ids.reshape({-1}).to(torch::kInt64).cpu().contiguous();
  std::vector<int64_t> next;
  AddChildren(0, v.data_ptr<double>(), i.data_ptr<int64_t>(),
              std::min<int64_t>(strategy.top_k, v.numel()), &next);
  depth_ = 1;
  Prepare(std::move(next));
}

void DraftTreeBuilder::AddChildren(int64_t node, const double* values, const int64_t* ids,
                                   int64_t k, std::vector<int64_t>* out) {
  // Canonical order among equal log-probs (topk's order of ties is unspecified): the smaller
  // token id first, as the device drafting loop does (gpu/draft_kernels.h).
  std::vector<int64_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  auto value = [&](int64_t j) { return std::isnan(values[j]) ? -INFINITY : values[j]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (value(a) != value(b)) return value(a) > value(b);
    return ids[a] < ids[b];
  });
  for (int64_t j : order) {
    if (!std::isfinite(values[j])) break;
    out->push_back(candidates_.Add(node, ids[j]));
    score_.push_back(score_[node] + values[j]);
  }
}

void DraftTreeBuilder::Prepare(std::vector<int64_t> next) {
  frontier_ = std::move(next);
  if (depth_ >= max_depth_ || frontier_.empty()) {
    done_ = true;
    frontier_.clear();
    return;
  }
  std::stable_sort(frontier_.begin(), frontier_.end(),
                   [&](int64_t a, int64_t b) { return score_[a] > score_[b]; });
  if (static_cast<int64_t>(frontier_.size()) > strategy_.top_k) frontier_.resize(strategy_.top_k);
  std::sort(frontier_.begin(), frontier_.end());
}

void DraftTreeBuilder::Expand(const torch::Tensor& logprobs) {
  const int64_t k = std::min<int64_t>(strategy_.top_k, logprobs.size(-1));
  auto top =
      logprobs.reshape({static_cast<int64_t>(frontier_.size()), -1}).to(torch::kFloat64).topk(k);
  ExpandTopK(std::get<0>(top), std::get<1>(top));
}

void DraftTreeBuilder::ExpandTopK(const torch::Tensor& top_values, const torch::Tensor& top_ids) {
  TORCH_CHECK(!done_ && top_values.size(0) == static_cast<int64_t>(frontier_.size()),
              "DraftTreeBuilder: one top-k row per frontier node");
  torch::Tensor v = top_values.to(torch::kFloat64).cpu().contiguous();
  torch::Tensor i = top_ids.to(torch::kInt64).cpu().contiguous();
  const int64_t cols = v.size(1), k = std::min<int64_t>(strategy_.top_k, cols);
  std::vector<int64_t> next;
  for (size_t j = 0; j < frontier_.size(); ++j) {
    AddChildren(frontier_[j], v.data_ptr<double>() + j * cols, i.data_ptr<int64_t>() + j * cols, k,
                &next);
  }
  ++depth_;
  Prepare(std::move(next));
}

DraftTree DraftTreeBuilder::Finish() const {
  return PruneCandidates(candidates_, score_, strategy_.max_draft_tokens());
}

DraftTree PruneCandidates(const DraftTree& candidates, const std::vector<double>& scores,
                          int64_t keep) {
  std::vector<int64_t> order(candidates.size() - 1);
  std::iota(order.begin(), order.end(), 1);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return candidates.depths[a] < candidates.depths[b];
  });
  if (static_cast<int64_t>(order.size()) > keep) order.resize(keep);
  std::sort(order.begin(), order.end());
  std::vector<int64_t> new_index(candidates.size(), -1);
  new_index[0] = 0;
  DraftTree tree = DraftTree::Root(candidates.tokens[0]);
  for (int64_t node : order) {
    const int64_t parent = new_index[candidates.parents[node]];
    TORCH_CHECK(parent >= 0, "PruneCandidates: a kept node lost its parent");
    new_index[node] = tree.Add(parent, candidates.tokens[node]);
  }
  return tree;
}

DraftTree BuildDraftTree(const Strategy& strategy, int64_t root_token,
                         const torch::Tensor& root_logprobs, const ExpandFn& expand) {
  DraftTreeBuilder builder(strategy, root_token, root_logprobs.to(torch::kFloat64));
  while (!builder.done()) builder.Expand(expand(builder.candidates(), builder.frontier()));
  return builder.Finish();
}

torch::Tensor AncestorMask(const DraftTree& tree) {
  const int64_t n = tree.size();
  torch::Tensor mask = torch::zeros({n, n}, torch::kBool);
  auto m = mask.accessor<bool, 2>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i; j >= 0; j = tree.parents[j]) m[i][j] = true;
  }
  return mask;
}

TreeBatch MakeTreeBatch(const std::vector<DraftTree>& trees, const std::vector<int64_t>& start,
                        const std::vector<int64_t>& slots, torch::Device device) {
  const int64_t B = static_cast<int64_t>(trees.size());
  std::vector<int64_t> counts(B);
  int64_t T = 1;
  for (int64_t b = 0; b < B; ++b) {
    counts[b] = trees[b].size();
    T = std::max(T, counts[b]);
  }
  TreeBatch out;
  out.layout = models::BatchLayout::Make(start, counts, T, slots, device);
  torch::Tensor tokens = torch::zeros({B, T}, torch::kInt64);
  torch::Tensor rotary = torch::arange(T, torch::kInt64).unsqueeze(0).repeat({B, 1});
  torch::Tensor mask = out.layout.mask.cpu().clone();  // [B, 1, T, K]
  for (int64_t b = 0; b < B; ++b) {
    const DraftTree& t = trees[b];
    const int64_t n = t.size();
    tokens[b].narrow(0, 0, n).copy_(torch::tensor(t.tokens, torch::kInt64));
    rotary[b].narrow(0, 0, n).copy_(torch::tensor(t.depths, torch::kInt64));
    mask[b][0].narrow(0, 0, n).narrow(1, start[b], n).copy_(AncestorMask(t));
  }
  rotary += torch::tensor(start, torch::kInt64).unsqueeze(1);
  out.layout.mask = mask.to(device);
  out.tokens = tokens.to(device);
  out.rotary_positions = rotary.to(device);
  return out;
}

const torch::Tensor& LmHeadWeight(models::Transformer& model) {
  return model->lm_head ? model->lm_head->weight : model->model->embed_tokens->weight;
}

models::ForwardOutput TreeForward(models::Transformer& model, const TreeBatch& batch,
                                  models::KvCache* cache) {
  const models::ModelConfig& c = model->config();
  models::TransformerBody& body = model->model;
  torch::Tensor h = body->embed_tokens(batch.tokens);
  models::RotaryEmbedding rotary(c.head_dim, c.rope_theta);
  auto cos_sin = rotary.CosSin(batch.rotary_positions, h.scalar_type());
  for (size_t i = 0; i < body->layers->size(); ++i) {
    h = body->layers[i]->as<models::DecoderLayer>()->forward(
        h, cos_sin.first, cos_sin.second, batch.layout, cache, static_cast<int64_t>(i));
  }
  models::ForwardOutput out;
  out.hidden = body->norm(h);
  out.logits = torch::matmul(out.hidden, LmHeadWeight(model).t()).to(torch::kFloat32);
  return out;
}

void CompactAcceptedPath(models::KvCache* cache, int64_t slot, int64_t start,
                         const std::vector<int64_t>& path) {
  std::vector<int64_t> src, dst;
  for (size_t i = 0; i < path.size(); ++i) {
    src.push_back(start + path[i]);
    dst.push_back(start + 1 + static_cast<int64_t>(i));
  }
  CHECK_OK(cache->CopyPositions(slot, src, dst));
}

}  // namespace tlt::speculative
