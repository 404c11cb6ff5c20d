// Tree verification through models::CudaDecoder::Forward (tree rows: rotary at depth, keys
// written at start + node, ancestor masks) against the eager TreeForward on the same model and
// cache contents. CUDA only: skips without a device or without the fused decoder in the build.
//
// Tolerance: float32 logits and hidden states within 1e-4 relative to the largest magnitude
// (both paths accumulate in float32; they differ only in summation order), cache rows the same.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/cuda_decoder.h"
#include "models/kv_cache.h"
#include "speculative/strategy.h"
#include "tests/models/test_models.h"

namespace tlt::speculative {
namespace {

double RelDiff(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor x = a.to(torch::kFloat64).cpu(), y = b.to(torch::kFloat64).cpu();
  return ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item<double>();
}

TEST(FusedVerifyTest, TreeRowsMatchTreeForward) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  models::ModelConfig c = models::testing::TinyConfig("qwen2", 4, 2, /*tied=*/false, 1e4, 53);
  c.hidden_size = 4 * 64;
  c.head_dim = 64;
  torch::manual_seed(3);
  models::Transformer model(c);
  models::testing::PerturbParameters(model, 4);
  model->to(torch::kCUDA, torch::kFloat32);
  model->eval();
  auto options = models::KvCacheOptions::ForModel(c, 2, 96, torch::kFloat32, torch::kCUDA);
  models::KvCache eager_cache(options), fused_cache(options);
  models::CudaDecoderOptions decoder_options;
  decoder_options.max_rows = 2 * 16;
  std::string why;
  auto decoder = models::CudaDecoder::Create(model, &fused_cache, decoder_options, &why);
  if (!decoder) GTEST_SKIP() << "no fused decoder: " << why;

  // Two prompts (lengths 9 and 20) in slots 1 and 0, prefilled identically into both caches.
  const std::vector<int64_t> slots = {1, 0}, lengths = {9, 20};
  torch::Tensor prompt = torch::randint(c.vocab_size, {2, 20}, torch::kInt64).to(torch::kCUDA);
  for (models::KvCache* cache : {&eager_cache, &fused_cache}) {
    ASSERT_TRUE(cache->AllocateSlot().ok());
    ASSERT_TRUE(cache->AllocateSlot().ok());
    model->Forward(prompt, models::BatchLayout::Make({0, 0}, lengths, 20, slots, torch::kCUDA),
                   cache);
    for (int b = 0; b < 2; ++b) ASSERT_TRUE(cache->SetLength(slots[b], lengths[b]).ok());
  }
  // A branching tree and a chain; a second round with other tokens replays the same graph.
  for (int round = 0; round < 2; ++round) {
    DraftTree tree = DraftTree::Root(5 + round);
    const int64_t a = tree.Add(0, 7), b = tree.Add(0, 9);
    const int64_t a1 = tree.Add(a, 11 + round);
    tree.Add(a, 13);
    tree.Add(b, 2);
    tree.Add(a1, 17);
    const DraftTree chain = DraftTree::Chain(3, {4 + round, 8, 15, 16});
    const std::vector<DraftTree> trees = {tree, chain};
    std::vector<int64_t> starts = {lengths[0] + 7 * round, lengths[1] + 7 * round};

    TreeBatch batch = MakeTreeBatch(trees, starts, slots, torch::kCUDA);
    models::ForwardOutput want = TreeForward(model, batch, &eager_cache);
    std::vector<models::DecodeRow> rows;
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t i = 0; i < trees[r].size(); ++i) {
        models::DecodeRow row;
        row.token = trees[r].tokens[i];
        row.position = starts[r] + i;
        row.slot = slots[r];
        row.rotary_position = starts[r] + trees[r].depths[i];
        row.tree_base = starts[r];
        for (int64_t p = trees[r].parents[i]; p >= 0; p = trees[r].parents[p]) {
          row.tree_mask |= 1ull << p;
        }
        rows.push_back(row);
      }
    }
    auto got = decoder->Forward(rows);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    int64_t offset = 0;
    for (int64_t r = 0; r < 2; ++r) {
      const int64_t n = trees[r].size();
      EXPECT_LT(RelDiff(got->logits.narrow(0, offset, n), want.logits[r].narrow(0, 0, n)), 1e-4)
          << "round " << round << " tree " << r;
      EXPECT_LT(RelDiff(got->hidden.narrow(0, offset, n), want.hidden[r].narrow(0, 0, n)), 1e-4)
          << "round " << round << " tree " << r;
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        for (bool keys : {true, false}) {
          auto& e = keys ? eager_cache.keys(l) : eager_cache.values(l);
          auto& f = keys ? fused_cache.keys(l) : fused_cache.values(l);
          EXPECT_LT(RelDiff(f[slots[r]].narrow(0, starts[r], n), e[slots[r]].narrow(0, starts[r], n)),
                    1e-5)
              << "cache layer " << l << (keys ? " keys" : " values");
        }
      }
      offset += n;
    }
    // Accept the path root -> a -> a1 in both caches (7 positions advance each round).
    for (models::KvCache* cache : {&eager_cache, &fused_cache}) {
      CompactAcceptedPath(cache, slots[0], starts[0], {a, a1});
    }
  }
  EXPECT_GE(decoder->num_graphs(), 1);
  // Rows past the tree window are refused with an error, not a crash.
  std::vector<models::DecodeRow> bad(1);
  bad[0].slot = 0;
  bad[0].position = 80;
  bad[0].tree_base = 10;
  EXPECT_FALSE(decoder->Forward(bad).ok());
}

}  // namespace
}  // namespace tlt::speculative
