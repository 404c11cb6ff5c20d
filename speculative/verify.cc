#include "speculative/verify.h"

#include <torch/torch.h>

#include <algorithm>

#include "models/sampling.h"

namespace tlt::speculative {
namespace {

double NextUniform(uint64_t seed, uint64_t* counter) {
  return models::CounterUniform(seed, (*counter)++, kVerifyStream);
}

// Row `row` of a [N, V] tensor as float64 probabilities on the CPU.
std::vector<double> RowProbs(const torch::Tensor& t, int64_t row, bool is_log) {
  torch::Tensor r = t.select(0, row).to(torch::kFloat64);
  if (is_log) r = r.exp();
  r = r.cpu().contiguous();
  return std::vector<double>(r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
}

// Inverse CDF over `p` in id order with the tokens in `removed` excluded: the first token whose
// cumulative mass exceeds u * (remaining mass). -1 when nothing is left.
int64_t DrawExcluding(std::vector<double> p, const std::vector<int64_t>& removed, double u) {
  for (int64_t t : removed) p[t] = 0.0;
  double total = 0.0;
  for (double x : p) total += std::max(x, 0.0);
  if (!(total > 0.0)) return -1;
  const double target = u * total;
  double cumulative = 0.0;
  int64_t last_positive = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0.0) continue;
    last_positive = static_cast<int64_t>(i);
    cumulative += p[i];
    if (cumulative > target) return last_positive;
  }
  return last_positive;
}

}  // namespace

VerifyResult VerifyTree(const DraftTree& tree, const torch::Tensor& target_logprobs,
                        uint64_t seed, uint64_t* counter) {
  TORCH_CHECK(target_logprobs.dim() == 2 && target_logprobs.size(0) == tree.size(),
              "VerifyTree: target_logprobs must be [tree nodes, V]");
  const auto children = tree.Children();
  const int64_t n = tree.size();
  int64_t width = 1;
  for (const auto& c : children) width = std::max<int64_t>(width, c.size());
  // p(child) for every node's children, gathered on the device: [n, width].
  std::vector<int64_t> index(n * width, 0);
  for (int64_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < children[i].size(); ++j) index[i * width + j] = tree.tokens[children[i][j]];
  }
  torch::Tensor idx = torch::tensor(index, torch::kInt64).view({n, width}).to(target_logprobs.device());
  torch::Tensor child_p =
      target_logprobs.gather(1, idx).to(torch::kFloat64).exp().cpu().contiguous();
  const double* cp = child_p.data_ptr<double>();

  VerifyResult out;
  int64_t node = 0;
  while (true) {
    const double u = NextUniform(seed, counter);
    const auto& ch = children[node];
    double mass = 0.0;
    int64_t accepted = -1;
    for (size_t j = 0; j < ch.size(); ++j) {
      mass += cp[node * width + j];
      if (u < mass) {
        accepted = ch[j];
        break;
      }
    }
    if (accepted < 0) {
      std::vector<int64_t> removed;
      for (int64_t c : ch) removed.push_back(tree.tokens[c]);
      const double rescaled = mass < 1.0 ? std::min((u - mass) / (1.0 - mass), 1.0 - 1e-16) : 0.0;
      const int64_t token =
          DrawExcluding(RowProbs(target_logprobs, node, true), removed, std::max(rescaled, 0.0));
      if (token >= 0) {
        out.tokens.push_back(token);
        out.last_node = node;
        return out;
      }
      // The children hold all the mass (up to rounding): take the most likely one.
      size_t best = 0;
      for (size_t j = 1; j < ch.size(); ++j) {
        if (cp[node * width + j] > cp[node * width + best]) best = j;
      }
      accepted = ch[best];
    }
    out.accepted_nodes.push_back(accepted);
    out.tokens.push_back(tree.tokens[accepted]);
    node = accepted;
  }
}

VerifyResult VerifyGreedyTree(const DraftTree& tree, const int64_t* argmax, uint64_t* counter) {
  const auto children = tree.Children();
  VerifyResult out;
  int64_t node = 0;
  while (true) {
    ++*counter;  // VerifyTree's uniform for this node
    int64_t next = -1;
    for (int64_t c : children[node]) {
      if (tree.tokens[c] == argmax[node]) {
        next = c;
        break;
      }
    }
    if (next < 0) {
      out.tokens.push_back(argmax[node]);
      out.last_node = node;
      return out;
    }
    out.accepted_nodes.push_back(next);
    out.tokens.push_back(tree.tokens[next]);
    node = next;
  }
}

VerifyResult VerifySampledChain(const std::vector<int64_t>& drafts,
                                const torch::Tensor& draft_probs,
                                const torch::Tensor& target_logprobs, uint64_t seed,
                                uint64_t* counter) {
  const int64_t n = static_cast<int64_t>(drafts.size());
  TORCH_CHECK(target_logprobs.dim() == 2 && target_logprobs.size(0) == n + 1,
              "VerifySampledChain: target_logprobs must be [drafts + 1, V]");
  TORCH_CHECK(n == 0 || (draft_probs.dim() == 2 && draft_probs.size(0) == n),
              "VerifySampledChain: draft_probs must be [drafts, V]");
  std::vector<double> p(n), q(n);
  if (n > 0) {
    torch::Tensor idx = torch::tensor(drafts, torch::kInt64).view({n, 1});
    torch::Tensor pt = target_logprobs.narrow(0, 0, n)
                           .gather(1, idx.to(target_logprobs.device()))
                           .to(torch::kFloat64).exp().cpu().contiguous();
    torch::Tensor qt = draft_probs.gather(1, idx.to(draft_probs.device()))
                           .to(torch::kFloat64).cpu().contiguous();
    std::copy(pt.data_ptr<double>(), pt.data_ptr<double>() + n, p.begin());
    std::copy(qt.data_ptr<double>(), qt.data_ptr<double>() + n, q.begin());
  }
  VerifyResult out;
  for (int64_t i = 0; i < n; ++i) {
    const double u = NextUniform(seed, counter);
    if (u * q[i] < p[i]) {  // probability min(1, p / q)
      out.accepted_nodes.push_back(i + 1);
      out.tokens.push_back(drafts[i]);
      continue;
    }
    std::vector<double> target = RowProbs(target_logprobs, i, true);
    std::vector<double> draft = RowProbs(draft_probs, i, false);
    std::vector<double> residual(target.size());
    for (size_t v = 0; v < target.size(); ++v) residual[v] = std::max(target[v] - draft[v], 0.0);
    const double u2 = NextUniform(seed, counter);
    int64_t token = DrawExcluding(residual, {}, u2);
    if (token < 0) token = DrawExcluding(target, {}, u2);  // p == q: rejection had mass 0
    out.tokens.push_back(token);
    out.last_node = i;
    return out;
  }
  out.tokens.push_back(DrawExcluding(RowProbs(target_logprobs, n, true), {}, NextUniform(seed, counter)));
  out.last_node = n;
  return out;
}

}  // namespace tlt::speculative
