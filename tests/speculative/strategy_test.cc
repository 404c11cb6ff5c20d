#include "speculative/strategy.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/models/test_models.h"

namespace tlt::speculative {
namespace {

TEST(StrategyTest, ParsesAndRejects) {
  auto s = ParseStrategy("8_4_16");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->steps, 8);
  EXPECT_EQ(s->top_k, 4);
  EXPECT_EQ(s->num_tokens, 16);
  EXPECT_EQ(s->Name(), "8_4_16");
  EXPECT_FALSE(s->is_chain());
  auto chain = ParseStrategy("5_1_3");
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(chain->is_chain());
  EXPECT_EQ(chain->max_draft_tokens(), 3);
  for (const char* bad : {"", "8_4", "8_4_16_2", "8__16", "a_4_16", "8_0_16", "8_4_-1", "8_4_16_",
                          "_8_4", "8 _4_16", "1_2_3", "99999999_1_1"}) {
    auto r = ParseStrategy(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed";
    if (!r.ok()) EXPECT_NE(r.status().message().find("strategy"), std::string::npos);
  }
  EXPECT_NE(ParseStrategy("8_x_16").status().message().find("top-k"), std::string::npos);
  EXPECT_NE(ParseStrategy("1_2_3").status().message().find("candidates"), std::string::npos);
}

// A fake drafter: the next-token log-probs depend on the path's last token only.
torch::Tensor FakeDraft(int64_t last_token, int64_t vocab) {
  torch::manual_seed(100 + last_token);
  return torch::log_softmax(torch::randn({vocab}) * 3, -1);
}

TEST(StrategyTest, BuildsEagleTreeAndChain) {
  const int64_t V = 20;
  int expand_calls = 0;
  ExpandFn expand = [&](const DraftTree& cand, const std::vector<int64_t>& nodes) {
    ++expand_calls;
    std::vector<torch::Tensor> rows;
    for (int64_t n : nodes) rows.push_back(FakeDraft(cand.tokens[n], V));
    return torch::stack(rows);
  };
  Strategy tree_strategy = ParseStrategy("4_3_10").value();
  DraftTree tree = BuildDraftTree(tree_strategy, 7, FakeDraft(7, V), expand);
  EXPECT_EQ(expand_calls, 3);
  ASSERT_TRUE(tree.Validate(V).ok());
  EXPECT_EQ(tree.num_draft_tokens(), 10);
  // The root's best draft token is its first child.
  EXPECT_EQ(tree.tokens[1], FakeDraft(7, V).argmax().item<int64_t>());
  // Cumulative log-probs: every kept node scores at least as high as any dropped depth-1 node.
  int64_t depth1 = 0;
  for (int64_t i = 1; i < tree.size(); ++i) depth1 += tree.depths[i] == 1;
  EXPECT_GE(depth1, 1);
  EXPECT_LE(depth1, 3);

  expand_calls = 0;
  Strategy chain_strategy = ParseStrategy("5_1_4").value();
  DraftTree chain = BuildDraftTree(chain_strategy, 7, FakeDraft(7, V), expand);
  EXPECT_EQ(expand_calls, 3);
  ASSERT_EQ(chain.num_draft_tokens(), 4);
  int64_t last = 7;
  for (int64_t i = 1; i < chain.size(); ++i) {
    EXPECT_EQ(chain.parents[i], i - 1);
    EXPECT_EQ(chain.tokens[i], FakeDraft(last, V).argmax().item<int64_t>());
    last = chain.tokens[i];
  }
}

// Equal draft log-probs rank the smaller token id first (the order the device drafting loop
// uses, gpu/draft_kernels.h), whatever order the top-k came in; PruneCandidates keeps the best
// nodes with their ancestors and breaks score ties by depth, then index.
TEST(StrategyTest, TiesRankTheSmallerTokenFirst) {
  Strategy s = ParseStrategy("1_3_3").value();
  const torch::Tensor values = torch::tensor({-1.0, -1.0, -1.0}, torch::kFloat64);
  DraftTreeBuilder builder(s, 0, values, torch::tensor({9, 2, 5}, torch::kInt64));
  ASSERT_TRUE(builder.done());
  EXPECT_EQ(builder.candidates().tokens, (std::vector<int64_t>{0, 2, 5, 9}));
  DraftTree candidates = DraftTree::Root(0);
  const int64_t a = candidates.Add(0, 4), b = candidates.Add(0, 6);
  candidates.Add(a, 1);
  candidates.Add(b, 3);
  // Scores: a -0.5, b -1, a's child -2, b's child -1: b ties with its child (shallower first).
  DraftTree kept = PruneCandidates(candidates, {0.0, -0.5, -1.0, -2.0, -1.0}, 3);
  EXPECT_EQ(kept.tokens, (std::vector<int64_t>{0, 4, 6, 3}));
  EXPECT_EQ(kept.parents, (std::vector<int64_t>{-1, 0, 0, 2}));
}

TEST(StrategyTest, AncestorMask) {
  DraftTree t = DraftTree::Root(0);
  t.Add(0, 1);  // 1
  t.Add(0, 2);  // 2
  t.Add(1, 3);  // 3
  torch::Tensor m = AncestorMask(t);
  torch::Tensor want = torch::tensor({1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1}).view({4, 4});
  EXPECT_TRUE(torch::equal(m, want.to(torch::kBool)));
}

// Each tree node's logits equal a plain forward of prefix + the node's path, and after
// compaction decoding continues as if the accepted path had been decoded one by one.
TEST(StrategyTest, TreeForwardMatchesPlainForwardOfEachPath) {
  auto config = models::testing::TinyConfig("qwen2", 4, 2, false);
  torch::manual_seed(3);
  models::Transformer model(config);
  models::testing::PerturbParameters(model, 4);
  model->eval();
  torch::NoGradGuard no_grad;
  models::KvCache cache(models::KvCacheOptions::ForModel(config, 2, 64, torch::kFloat32,
                                                         torch::kCPU));
  const int64_t slot = cache.AllocateSlot().value();
  std::vector<int64_t> prefix = {5, 9, 2, 44, 17};
  torch::Tensor pt = torch::tensor(prefix).unsqueeze(0);
  model->Forward(pt, models::BatchLayout::Make({0}, {5}, 5, {slot}, torch::kCPU), &cache);
  ASSERT_TRUE(cache.SetLength(slot, 5).ok());
  DraftTree t = DraftTree::Root(30);
  int64_t a = t.Add(0, 11);
  t.Add(0, 12);
  int64_t c = t.Add(a, 13);
  t.Add(a, 14);
  int64_t e = t.Add(c, 15);
  TreeBatch batch = MakeTreeBatch({t}, {5}, {slot}, torch::kCPU);
  models::ForwardOutput out = TreeForward(model, batch, &cache);
  for (int64_t node = 0; node < t.size(); ++node) {
    std::vector<int64_t> seq = prefix;
    std::vector<int64_t> path;
    for (int64_t j = node; j >= 0; j = t.parents[j]) path.insert(path.begin(), t.tokens[j]);
    seq.insert(seq.end(), path.begin(), path.end());
    torch::Tensor want = model->forward(torch::tensor(seq).unsqueeze(0))[0][-1];
    EXPECT_LT(models::testing::MaxRelError(out.logits[0][node], want), 1e-5) << "node " << node;
  }
  // Accept root -> a -> c -> e, compact, then decode one more token with the cache.
  CompactAcceptedPath(&cache, slot, 5, {a, c, e});
  ASSERT_TRUE(cache.SetLength(slot, 9).ok());
  torch::Tensor next = torch::tensor({{21}});
  auto got = model->Forward(next, models::BatchLayout::Make({9}, {1}, 1, {slot}, torch::kCPU),
                            &cache);
  std::vector<int64_t> seq = {5, 9, 2, 44, 17, 30, 11, 13, 15, 21};
  torch::Tensor want = model->forward(torch::tensor(seq).unsqueeze(0))[0][-1];
  EXPECT_LT(models::testing::MaxRelError(got.logits[0][0], want), 1e-5);
}

}  // namespace
}  // namespace tlt::speculative
