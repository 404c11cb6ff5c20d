// Drafting strategies and the tree they produce, and the target's tree-attention verify forward.
//
// A Strategy is (draft steps, top-k, draft tokens verified), written "STEPS_TOPK_TOKENS" as in
// the TLT release ("8_4_16"). Top-k 1 is a chain of min(steps, tokens) drafts; more is an
// EAGLE-2 tree: the root's top-k draft tokens form depth 1; at each further step the top-k
// candidates of the newest depth by cumulative draft log-probability are expanded, each into its
// top-k children; finally the `tokens` best candidates overall by cumulative log-probability
// (ties: shallower, then older first, so a node's ancestors always come with it) are kept.
//
// The verify forward runs the root and all draft nodes of each request's tree in one target
// forward: node i of a request whose cache holds `start` positions is written to cache position
// start + i, is rotated as position start + depth(i), and attends to the whole cached prefix
// plus its own ancestors and itself. After verification the caller keeps the accepted path with
// CompactAcceptedPath (moves its keys/values to start + 1, start + 2, ...) and
// KvCache::SetLength.
//
// Everything here is pure except the forwards (which write the cache). Not thread-safe where a
// module or cache is involved (as LibTorch modules).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/attention.h"
#include "models/kv_cache.h"
#include "models/transformer.h"
#include "runtime/status.h"
#include "speculative/draft_tree.h"

namespace tlt::speculative {

struct Strategy {
  int64_t steps = 1;       // drafter forwards per speculative step (tree depth)
  int64_t top_k = 1;       // branching; 1 = chain
  int64_t num_tokens = 1;  // draft tokens verified (tree nodes besides the root)

  bool is_chain() const { return top_k == 1; }
  // Draft tokens a tree of this strategy really holds (a chain has at most `steps`).
  int64_t max_draft_tokens() const { return is_chain() ? std::min(steps, num_tokens) : num_tokens; }
  std::string Name() const;  // "8_4_16"
};

// Parses "STEPS_TOPK_TOKENS"; each a positive integer, tokens <= the candidates the tree can
// have (top_k + (steps - 1) * top_k^2). Errors say which field is wrong.
Result<Strategy> ParseStrategy(const std::string& text);

// Draft log-probs [nodes.size(), V] for the candidate nodes `nodes` of `candidates` (the tree
// grown so far, candidates.tokens[n] the node's token): the drafter's next-token distribution
// after the path root .. n.
using ExpandFn =
    std::function<torch::Tensor(const DraftTree& candidates, const std::vector<int64_t>& nodes)>;

// Builds the pruned tree for `strategy` from the root's draft log-probs [V] (see above).
// `expand` is called steps - 1 times, each with the nodes of one depth.
DraftTree BuildDraftTree(const Strategy& strategy, int64_t root_token,
                         const torch::Tensor& root_logprobs, const ExpandFn& expand);

// BuildDraftTree one depth at a time, so that the expansions of many requests can share one
// drafter forward: construct, then while !done() give Expand() the draft log-probs of frontier()
// (or ExpandTopK() their top-k), then Finish(). Top-k inputs are [n, k'] (k' >= min(top_k, V)
// columns are not needed: the first min(top_k, V) are used), values descending, on any device.
class DraftTreeBuilder {
 public:
  DraftTreeBuilder(const Strategy& strategy, int64_t root_token,
                   const torch::Tensor& root_logprobs);
  // Root from its top-k values/ids [k] (descending).
  DraftTreeBuilder(const Strategy& strategy, int64_t root_token, const torch::Tensor& top_values,
                   const torch::Tensor& top_ids);
  bool done() const { return done_; }
  const DraftTree& candidates() const { return candidates_; }
  // Candidate nodes to expand next, in index order (valid while !done()).
  const std::vector<int64_t>& frontier() const { return frontier_; }
  void Expand(const torch::Tensor& logprobs);  // [frontier().size(), V]
  void ExpandTopK(const torch::Tensor& top_values, const torch::Tensor& top_ids);  // [n, k]
  // The best max_draft_tokens() candidates as a tree.
  DraftTree Finish() const;

 private:
  void AddChildren(int64_t node, const double* values, const int64_t* ids, int64_t k,
                   std::vector<int64_t>* out);
  void Prepare(std::vector<int64_t> next);

  Strategy strategy_;
  DraftTree candidates_;
  std::vector<double> score_{0.0};
  std::vector<int64_t> frontier_;
  int64_t depth_ = 0, max_depth_ = 0;
  bool done_ = false;
};

// The best `keep` nodes of a candidate tree (scores[i]: node i's cumulative draft log-prob;
// ties: the shallower, then the older node, so a node's ancestors always come with it) as a
// tree in candidate order: DraftTreeBuilder::Finish() and the device drafting loop's last step.
DraftTree PruneCandidates(const DraftTree& candidates, const std::vector<double>& scores,
                          int64_t keep);

// [n, n] bool: entry (i, j) true iff node j is node i or one of its ancestors.
torch::Tensor AncestorMask(const DraftTree& tree);

// The layout of one tree-attention forward of a batch, row b holding trees[b] (root first) for
// cache slot slots[b] whose first start[b] positions are filled. `layout.positions` are the cache
// write positions, `rotary_positions` [B, T] the positions the tokens are rotated by.
struct TreeBatch {
  models::BatchLayout layout;
  torch::Tensor tokens;            // [B, T] int64 (padding 0)
  torch::Tensor rotary_positions;  // [B, T] int64
};
TreeBatch MakeTreeBatch(const std::vector<DraftTree>& trees, const std::vector<int64_t>& start,
                        const std::vector<int64_t>& slots, torch::Device device);

// Target forward over a TreeBatch through `model`'s public modules, writing the cache: float32
// logits [B, T, V] and the final hidden states [B, T, H] (after the final norm).
models::ForwardOutput TreeForward(models::Transformer& model, const TreeBatch& batch,
                                  models::KvCache* cache);

// Copies the keys/values of the tree nodes `path` (increasing, root excluded) of the request in
// `slot`, written at start + node, to start + 1, start + 2, ... in every layer.
void CompactAcceptedPath(models::KvCache* cache, int64_t slot, int64_t start,
                         const std::vector<int64_t>& path);

// The LM head of `model` ([V, H] weight; the embedding when tied).
const torch::Tensor& LmHeadWeight(models::Transformer& model);

}  // namespace tlt::speculative
