#include "speculative/verify.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "spec_test_util.h"

namespace tlt::speculative {
namespace {

using testing::ExpectDistribution;
using testing::Processed;
using testing::RowOf;

constexpr int64_t kVocab = 10;
constexpr int kSamples = 20000;

struct Case {
  const char* name;
  models::SamplingParams params;
};
const Case kCases[] = {
    {"T=1", {1.0, 0, 1.0}},
    {"T=0.7 top-p 0.9", {0.7, 0, 0.9}},
    {"top-k 5", {1.0, 5, 1.0}},
};

torch::Tensor RandomLogits(int64_t rows, uint64_t seed, double scale = 1.5) {
  torch::manual_seed(seed);
  return torch::randn({rows, kVocab}, torch::kFloat64).mul(scale).to(torch::kFloat32);
}

int64_t Argmax(const torch::Tensor& logprobs, int64_t row) {
  return logprobs[row].argmax().item<int64_t>();
}

// root -> {a, b, c}, a -> {d, e}, d -> {f}: likely target tokens (so every branch is reached
// often), the root's children not in probability order. Nodes: a 1, b 2, c 3, d 4, e 5, f 6.
DraftTree TestTree(const torch::Tensor& logits) {
  auto top = [&](int64_t row, int64_t k) {
    auto ids = std::get<1>(logits[row].topk(k)).contiguous();
    return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + k);
  };
  DraftTree t = DraftTree::Root(3);
  std::vector<int64_t> r = top(0, 3);
  int64_t a = t.Add(0, r[1]);
  t.Add(0, r[0]);
  t.Add(0, r[2]);
  std::vector<int64_t> ad = top(1, 2);
  int64_t d = t.Add(a, ad[0]);
  t.Add(a, ad[1]);
  t.Add(d, top(4, 1)[0]);
  return t;
}

TEST(VerifyTreeTest, OutputTokensHaveTheTargetDistribution) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    torch::Tensor logits = RandomLogits(7, 11, 2.5);
    DraftTree tree = TestTree(logits);
    ASSERT_TRUE(tree.Validate(kVocab).ok());
    torch::Tensor lp = Processed(logits, c.params);
    // Node indices: a = 1, d = 4, f = 6 (a leaf).
    std::vector<int64_t> first(kVocab), after_a(kVocab), after_d(kVocab), bonus_f(kVocab),
        rejected_at_root(kVocab);
    for (int i = 0; i < kSamples; ++i) {
      uint64_t counter = 0;
      VerifyResult r = VerifyTree(tree, lp, /*seed=*/i, &counter);
      ASSERT_EQ(r.tokens.size(), r.accepted_nodes.size() + 1);
      first[r.tokens[0]]++;
      if (r.accepted_nodes.empty()) rejected_at_root[r.tokens[0]]++;
      if (!r.accepted_nodes.empty() && r.accepted_nodes[0] == 1) after_a[r.tokens[1]]++;
      if (r.accepted_nodes.size() >= 2 && r.accepted_nodes[1] == 4) after_d[r.tokens[2]]++;
      if (r.accepted_nodes.size() == 3) bonus_f[r.tokens[3]]++;
      EXPECT_EQ(counter, r.accepted_nodes.size() + 1);  // one uniform per visited node
    }
    ExpectDistribution(first, RowOf(lp, 0), "first token");
    std::vector<double> residual = RowOf(lp, 0);
    for (int64_t child : {1, 2, 3}) residual[tree.tokens[child]] = 0.0;
    double residual_mass = 0;
    for (double x : residual) residual_mass += x;
    if (residual_mass > 0.05) {
      ExpectDistribution(rejected_at_root, residual, "first rejected token", 0.05);
    } else {  // top-p left only the three drafted tokens
      for (int64_t x : rejected_at_root) EXPECT_LE(x, 0.01 * kSamples);
    }
    ExpectDistribution(after_a, RowOf(lp, 1), "token after a");
    ExpectDistribution(after_d, RowOf(lp, 4), "token after d", 0.05);
    int64_t leaf_visits = 0;
    for (int64_t x : bonus_f) leaf_visits += x;
    if (leaf_visits > 1000) ExpectDistribution(bonus_f, RowOf(lp, 6), "bonus token", 0.06);
  }
}

TEST(VerifyTreeTest, ChainOfTargetFavouritesAcceptCountAndBonus) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    torch::Tensor lp = Processed(RandomLogits(3, 21, 2.5), c.params);
    DraftTree chain = DraftTree::Chain(5, {Argmax(lp, 0), Argmax(lp, 1)});
    std::vector<int64_t> accepts(3), bonus(kVocab), first(kVocab);
    for (int i = 0; i < kSamples; ++i) {
      uint64_t counter = 100;
      VerifyResult r = VerifyTree(chain, lp, 1000 + i, &counter);
      accepts[r.num_accepted()]++;
      first[r.tokens[0]]++;
      if (r.num_accepted() == 2) bonus[r.tokens[2]]++;
    }
    const double p1 = RowOf(lp, 0)[chain.tokens[1]], p2 = RowOf(lp, 1)[chain.tokens[2]];
    ExpectDistribution(accepts, {1 - p1, p1 * (1 - p2), p1 * p2}, "accept count");
    ExpectDistribution(first, RowOf(lp, 0), "first token");
    ExpectDistribution(bonus, RowOf(lp, 2), "bonus token");
  }
}

TEST(VerifyTreeTest, GreedyAcceptsExactlyTheArgmaxPrefix) {
  torch::Tensor logits = RandomLogits(5, 3);
  torch::Tensor lp = Processed(logits, {0.0, 0, 1.0});
  std::vector<int64_t> best;
  for (int64_t i = 0; i < 5; ++i) best.push_back(logits[i].argmax().item<int64_t>());
  for (uint64_t seed = 0; seed < 50; ++seed) {
    uint64_t counter = 0;
    // Chain: two right, then a wrong one.
    DraftTree chain = DraftTree::Chain(0, {best[0], best[1], (best[2] + 1) % kVocab, best[3]});
    VerifyResult r = VerifyTree(chain, lp, seed, &counter);
    EXPECT_EQ(r.tokens, (std::vector<int64_t>{best[0], best[1], best[2]}));
    // Tree: the argmax is the second child of the root; nothing below it.
    DraftTree tree = DraftTree::Root(0);
    tree.Add(0, (best[0] + 1) % kVocab);
    tree.Add(0, best[0]);
    r = VerifyTree(tree, lp.narrow(0, 0, 3), seed, &counter);
    EXPECT_EQ(r.accepted_nodes, std::vector<int64_t>{2});
    EXPECT_EQ(r.tokens, (std::vector<int64_t>{best[0], best[2]}));  // bonus: row 2's argmax
    // Draft == target (greedy): everything accepted, then the bonus argmax.
    DraftTree all = DraftTree::Chain(0, {best[0], best[1], best[2], best[3]});
    r = VerifyTree(all, lp, seed, &counter);
    EXPECT_EQ(r.tokens, (std::vector<int64_t>{best[0], best[1], best[2], best[3], best[4]}));
  }
}

// VerifyGreedyTree (argmax only) gives VerifyTree's result on one-hot rows, for random trees,
// and advances the counter the same way.
TEST(VerifyTreeTest, GreedyTreeFromArgmaxEqualsVerifyTree) {
  torch::Tensor logits = RandomLogits(9, 7);
  torch::Tensor lp = Processed(logits, {0.0, 0, 1.0});
  std::vector<int64_t> best;
  for (int64_t i = 0; i < 9; ++i) best.push_back(lp[i].argmax().item<int64_t>());
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    // 9 nodes, each under a random earlier node; tokens near the parent's argmax so that some
    // paths are accepted; siblings distinct.
    DraftTree tree = DraftTree::Root(0);
    for (int64_t i = 1; i < 9; ++i) {
      const int64_t parent = static_cast<int64_t>(rng() % i);
      std::vector<int64_t> used;
      for (int64_t j = 1; j < i; ++j) {
        if (tree.parents[j] == parent) used.push_back(tree.tokens[j]);
      }
      int64_t token = rng() % 2 == 0 ? best[parent] : static_cast<int64_t>(rng() % kVocab);
      while (std::find(used.begin(), used.end(), token) != used.end()) token = (token + 1) % kVocab;
      tree.Add(parent, token);
    }
    uint64_t c1 = 5, c2 = 5;
    const VerifyResult want = VerifyTree(tree, lp, trial, &c1);
    const VerifyResult got = VerifyGreedyTree(tree, best.data(), &c2);
    EXPECT_EQ(got.tokens, want.tokens) << "trial " << trial;
    EXPECT_EQ(got.accepted_nodes, want.accepted_nodes) << "trial " << trial;
    EXPECT_EQ(got.last_node, want.last_node) << "trial " << trial;
    EXPECT_EQ(c2, c1) << "trial " << trial;
  }
}

TEST(VerifySampledChainTest, OutputTokensHaveTheTargetDistribution) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    torch::Tensor logits = RandomLogits(3, 31, 2.5);
    torch::Tensor lp = Processed(logits, c.params);
    // A draft close to, but not equal to, the target.
    torch::Tensor q = torch::softmax(
        (logits.narrow(0, 0, 2) + RandomLogits(2, 41, 0.7)).to(torch::kFloat64), -1).contiguous();
    std::mt19937_64 rng(5);
    std::vector<int64_t> first(kVocab), second(kVocab), bonus(kVocab);
    for (int i = 0; i < kSamples; ++i) {
      std::vector<int64_t> drafts;
      for (int64_t row = 0; row < 2; ++row) {
        std::discrete_distribution<int64_t> d(q[row].data_ptr<double>(),
                                              q[row].data_ptr<double>() + kVocab);
        drafts.push_back(d(rng));
      }
      uint64_t counter = 0;
      VerifyResult r = VerifySampledChain(drafts, q, lp, 77 + i, &counter);
      first[r.tokens[0]]++;
      if (r.num_accepted() >= 1) second[r.tokens[1]]++;
      if (r.num_accepted() == 2) bonus[r.tokens[2]]++;
    }
    ExpectDistribution(first, RowOf(lp, 0), "first token");
    ExpectDistribution(second, RowOf(lp, 1), "second token", 0.04);
    ExpectDistribution(bonus, RowOf(lp, 2), "bonus token", 0.06);
  }
}

TEST(VerifySampledChainTest, DraftEqualToTargetAcceptsEverything) {
  torch::Tensor lp = Processed(RandomLogits(4, 51), {0.7, 0, 0.9});
  torch::Tensor q = lp.narrow(0, 0, 3).exp().to(torch::kFloat64);
  std::mt19937_64 rng(9);
  for (int i = 0; i < 2000; ++i) {
    std::vector<int64_t> drafts;
    for (int64_t row = 0; row < 3; ++row) {
      std::discrete_distribution<int64_t> d(q[row].data_ptr<double>(),
                                            q[row].data_ptr<double>() + kVocab);
      drafts.push_back(d(rng));
    }
    uint64_t counter = 0;
    VerifyResult r = VerifySampledChain(drafts, q, lp, i, &counter);
    ASSERT_EQ(r.num_accepted(), 3);
  }
}

TEST(VerifyTreeTest, SameSeedSameResult) {
  torch::Tensor logits = RandomLogits(7, 11);
  torch::Tensor lp = Processed(logits, {1.0, 0, 1.0});
  DraftTree tree = TestTree(logits);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    uint64_t c1 = 4, c2 = 4;
    EXPECT_EQ(VerifyTree(tree, lp, seed, &c1).tokens, VerifyTree(tree, lp, seed, &c2).tokens);
  }
}

}  // namespace
}  // namespace tlt::speculative
