// DraftTree: the tokens a drafter proposes for one request in one speculative step.
//
// Node 0 is the root: the last token of the request that the target has not processed yet (it
// is always kept; it is not verified). Nodes 1..size()-1 are draft tokens; parents[i] < i, so a
// parent always precedes its children and nodes sorted by index are a valid processing order.
// A chain of n drafts is the tree with parents {-1, 0, 1, ..., n-1}. The children of a node, in
// increasing index order, are the order in which verification tries them (put the most likely
// first). Siblings must carry distinct tokens. A plain value type, no LibTorch dependency.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::speculative {

struct DraftTree {
  std::vector<int64_t> tokens;   // tokens[0] is the root token
  std::vector<int64_t> parents;  // parents[0] == -1
  std::vector<int64_t> depths;   // depths[0] == 0, depths[i] == depths[parents[i]] + 1

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_draft_tokens() const { return size() - 1; }

  // The root alone (no drafts).
  static DraftTree Root(int64_t root_token) { return Chain(root_token, {}); }
  // root -> drafts[0] -> drafts[1] -> ...
  static DraftTree Chain(int64_t root_token, const std::vector<int64_t>& drafts) {
    DraftTree t;
    t.tokens.push_back(root_token);
    t.parents.push_back(-1);
    t.depths.push_back(0);
    for (size_t i = 0; i < drafts.size(); ++i) {
      t.tokens.push_back(drafts[i]);
      t.parents.push_back(static_cast<int64_t>(i));
      t.depths.push_back(static_cast<int64_t>(i) + 1);
    }
    return t;
  }
  // Appends a node under `parent` and returns its index.
  int64_t Add(int64_t parent, int64_t token) {
    tokens.push_back(token);
    parents.push_back(parent);
    depths.push_back(depths.at(parent) + 1);
    return size() - 1;
  }
  // children[i]: the children of node i in index order.
  std::vector<std::vector<int64_t>> Children() const {
    std::vector<std::vector<int64_t>> out(tokens.size());
    for (int64_t i = 1; i < size(); ++i) out[parents[i]].push_back(i);
    return out;
  }
  // Checks the invariants above; tokens must lie in [0, vocab_size).
  Status Validate(int64_t vocab_size) const {
    if (tokens.empty() || parents.size() != tokens.size() || depths.size() != tokens.size() ||
        parents[0] != -1 || depths[0] != 0) {
      return InvalidArgument("DraftTree: needs a root with parent -1 and equal-sized vectors");
    }
    for (int64_t i = 0; i < size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= vocab_size) {
        return InvalidArgument("DraftTree: token " + std::to_string(tokens[i]) + " of node " +
                               std::to_string(i) + " outside the vocabulary");
      }
      if (i == 0) continue;
      if (parents[i] < 0 || parents[i] >= i || depths[i] != depths[parents[i]] + 1) {
        return InvalidArgument("DraftTree: node " + std::to_string(i) + " has a bad parent/depth");
      }
      for (int64_t j = parents[i] + 1; j < i; ++j) {
        if (parents[j] == parents[i] && tokens[j] == tokens[i]) {
          return InvalidArgument("DraftTree: siblings " + std::to_string(j) + " and " +
                                 std::to_string(i) + " carry the same token");
        }
      }
    }
    return Status::OK();
  }
};

}  // namespace tlt::speculative
