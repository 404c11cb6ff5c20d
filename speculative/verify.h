// Lossless verification of draft tokens against the target model's distribution.
//
// `target_logprobs` are the target's next-token log-probs after exactly the plain sampler's
// processing (models::ProcessedLogProbs with the request's temperature/top-k/top-p): row i is
// the distribution of the token that follows node i of the tree (row 0 follows the root). With
// temperature 0 that distribution is one-hot on the argmax, so the same code is greedy
// verification: it accepts exactly the drafts that equal the argmax and then emits the argmax.
//
// VerifyTree (deterministic drafts, e.g. the draft's top-k, arranged as a tree): starting at the
// root, draw one uniform u; over the node's children in order accumulate p(child) and accept the
// first child with u < accumulated mass, then continue from it. If none is accepted, the output
// token is drawn from p with the tried children removed and renormalized (drawn with the same u
// rescaled to (u - S) / (1 - S), which is uniform given rejection), and the walk stops. At a leaf
// every child set is empty, so that draw is the bonus token from p. Each output token therefore
// has exactly the target's distribution given the tokens before it.
//
// VerifySampledChain (drafts sampled from the draft distributions q): accept draft x with
// probability min(1, p(x) / q(x)); on rejection draw from norm(max(0, p - q)) and stop; when all
// are accepted draw the bonus token from the last row of p.
//
// Randomness is counter-based like models::Sample: uniform number c of a request is
// models::CounterUniform(seed, c, kVerifyStream); `*counter` is the request's running count and
// is advanced by the number of uniforms used, so results depend only on the seed, the count and
// the request's own logits. Draws over the vocabulary are inverse CDFs in token-id order.
// Pure functions; thread-safe. Tensors may live on any device (only a few values are copied).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "speculative/draft_tree.h"

namespace tlt::speculative {

// The stream of models::CounterUniform used by verification (plain sampling uses stream 0).
inline constexpr uint64_t kVerifyStream = 0x5eed5eedull;
// The stream that sampled drafts draw from (SpeculativeEngine with sample_drafts).
inline constexpr uint64_t kDraftStream = 0xd4af75eedull;

struct VerifyResult {
  // Accepted draft nodes, root excluded, in path order (for a tree: indices into the tree).
  std::vector<int64_t> accepted_nodes;
  // The tokens the request gains: the accepted draft tokens, then one token sampled from the
  // target (a correction after a rejection, or the bonus token). Size accepted_nodes + 1.
  std::vector<int64_t> tokens;
  // The node whose target row produced the last token (0 = root when nothing was accepted).
  int64_t last_node = 0;
  int64_t num_accepted() const { return static_cast<int64_t>(accepted_nodes.size()); }
};

// target_logprobs [tree.size(), V] float log-probs (see above).
VerifyResult VerifyTree(const DraftTree& tree, const torch::Tensor& target_logprobs,
                        uint64_t seed, uint64_t* counter);

// VerifyTree for greedy requests, from each node's argmax (argmax[i]: the argmax of node i's
// row, tree.size() entries): with one-hot rows VerifyTree accepts exactly the child whose token
// is its node's argmax and then emits the last node's argmax, so this returns the same result
// and advances *counter the same way (one uniform a visited node) without the rows themselves.
VerifyResult VerifyGreedyTree(const DraftTree& tree, const int64_t* argmax, uint64_t* counter);

// drafts [n] sampled from draft_probs [n, V] (row i: the distribution drafts[i] came from);
// target_logprobs [n + 1, V]. accepted_nodes are chain positions 1..m (a chain DraftTree).
VerifyResult VerifySampledChain(const std::vector<int64_t>& drafts,
                                const torch::Tensor& draft_probs,
                                const torch::Tensor& target_logprobs, uint64_t seed,
                                uint64_t* counter);

}  // namespace tlt::speculative
