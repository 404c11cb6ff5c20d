// Tree verification through models::CudaDecoder::Forward (tree rows: rotary at depth, keys
// written at start + node, ancestor masks) against the eager TreeForward on the same model and
// cache contents. CUDA only: skips without a device or without the fused decoder in the build.
//
// Tolerance: float32 logits and hidden states within 1e-4 relative to the largest magnitude
// (both paths accumulate in float32; they differ only in summation order), cache rows the same.
#include <gtest/gtest.h>
#include <torch/torch.h>

#ifdef TLT_MODELS_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "gpu/decode_kernels.h"
#include "gpu/tree_attention.h"
#endif

#include "models/cuda_decoder.h"
#include "models/kv_cache.h"
#include "speculative/drafter.h"
#include "speculative/speculative_engine.h"
#include "speculative/strategy.h"
#include "tests/models/test_models.h"

namespace tlt::speculative {
namespace {

double RelDiff(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor x = a.to(torch::kFloat64).cpu(), y = b.to(torch::kFloat64).cpu();
  return ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item<double>();
}

// A small Qwen2-shaped model (4 heads of 64, 2 kv heads, vocab 53) the fused kernels take.
models::Transformer TinyQwen(uint64_t seed, uint64_t perturb_seed) {
  models::ModelConfig c = models::testing::TinyConfig("qwen2", 4, 2, /*tied=*/false, 1e4, 53);
  c.hidden_size = 4 * 64;
  c.head_dim = 64;
  torch::manual_seed(seed);
  models::Transformer model(c);
  models::testing::PerturbParameters(model, perturb_seed);
  return model;
}

// shared_keys: models::CudaDecoderOptions::tree_attention_shared_keys.
void CheckTreeRowsMatchTreeForward(bool shared_keys) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  models::Transformer model = TinyQwen(3, 4);
  const models::ModelConfig c = model->config();
  model->to(torch::kCUDA, torch::kFloat32);
  model->eval();
  auto options = models::KvCacheOptions::ForModel(c, 2, 96, torch::kFloat32, torch::kCUDA);
  models::KvCache eager_cache(options), fused_cache(options);
  models::CudaDecoderOptions decoder_options;
  decoder_options.max_rows = 2 * 16;
  decoder_options.tree_attention_shared_keys = shared_keys;
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
    // The same rows staged on the device (13 rows padded to a 16-row graph): the same step, the
    // same cache writes, so the same logits bit for bit.
    {
      const torch::Tensor first_logits = got->logits.clone();
      std::vector<int64_t> fields;
      for (int f = 0; f < models::CudaDecoder::kDeviceRowFields; ++f) {
        for (const models::DecodeRow& row : rows) {
          const int64_t v[] = {row.token,     row.position,
                               row.slot,      row.rotary_position,
                               row.tree_base, static_cast<int64_t>(row.tree_mask)};
          fields.push_back(v[f]);
        }
      }
      const torch::Tensor device_rows =
          torch::tensor(fields, torch::kInt64)
              .view({models::CudaDecoder::kDeviceRowFields, static_cast<int64_t>(rows.size())})
              .to(torch::kCUDA);
      auto again = decoder->ForwardDeviceRows(device_rows, torch::Tensor());
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      EXPECT_TRUE(torch::equal(again->logits, first_logits)) << "round " << round;
      EXPECT_FALSE(decoder->ForwardDeviceRows(device_rows.cpu(), torch::Tensor()).ok());
      got = decoder->Forward(rows);  // `got` views the buffers the device-row step rewrote
      ASSERT_TRUE(got.ok());
    }
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
          EXPECT_LT(
              RelDiff(f[slots[r]].narrow(0, starts[r], n), e[slots[r]].narrow(0, starts[r], n)),
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

TEST(FusedVerifyTest, TreeRowsMatchTreeForward) { CheckTreeRowsMatchTreeForward(false); }

TEST(FusedVerifyTest, TreeRowsMatchTreeForwardWithSharedKeyTiles) {
  CheckTreeRowsMatchTreeForward(true);
}

#ifdef TLT_MODELS_CUDA
// gpu/tree_attention.h against float64 attention over the same (rounded) queries and caches:
// a 49-node tree late in a long context (several key chunks, so the combine runs), a padding
// row, and a 5-node chain of another slot, in tiles that straddle them. float32 within 1e-5 of
// the largest output, bfloat16 within 1e-2 (the output's rounding, 2^-8 relative). A second
// call gives the same bits (the counters are left zero).
TEST(FusedVerifyTest, SharedKeyTreeAttentionMatchesReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  struct Shape {
    int64_t H, KV, D;
  };
  for (const Shape shape : {Shape{8, 2, 64}, Shape{4, 2, 16}}) {
    for (const torch::Dtype dtype : {torch::kFloat32, torch::kBFloat16}) {
      const int64_t H = shape.H, KV = shape.KV, D = shape.D, max_length = 400;
      SCOPED_TRACE("H " + std::to_string(H) + " D " + std::to_string(D) + " " +
                   std::string(c10::toString(dtype)));
      const int kernel_dtype = dtype == torch::kFloat32 ? kTltFloat32 : kTltBFloat16;
      ASSERT_NE(TltTreeAttentionSupported(kernel_dtype, H, KV, D), 0);
      torch::manual_seed(17);
      // Rows: 49 tree nodes of slot 2 at 300.., a padding row, a 5-node chain of slot 0 at 37..
      std::vector<int64_t> positions, bases, masks, slots;
      std::vector<int64_t> parents = {-1};
      for (int64_t i = 1; i < 49; ++i) parents.push_back((i * 7 + 3) % i);
      for (int64_t i = 0; i < 49; ++i) {
        uint64_t mask = 0;
        for (int64_t p = parents[i]; p >= 0; p = parents[p]) mask |= 1ull << p;
        positions.push_back(300 + i), bases.push_back(300), slots.push_back(2);
        masks.push_back(static_cast<int64_t>(mask));
      }
      positions.push_back(0), bases.push_back(-1), slots.push_back(-1), masks.push_back(0);
      for (int64_t i = 0; i < 5; ++i) {
        positions.push_back(37 + i), bases.push_back(37), slots.push_back(0);
        masks.push_back(i == 0 ? 0 : static_cast<int64_t>(~0ull >> (64 - i)));
      }
      const int64_t B = static_cast<int64_t>(positions.size());
      auto cuda = [](const std::vector<int64_t>& v) {
        return torch::tensor(v, torch::kInt64).to(torch::kCUDA);
      };
      const torch::Tensor pos_d = cuda(positions), base_d = cuda(bases), mask_d = cuda(masks),
                          slot_d = cuda(slots);
      auto opts = torch::TensorOptions().dtype(dtype).device(torch::kCUDA);
      const torch::Tensor q = torch::randn({B, H, D}, opts);
      const torch::Tensor k_cache = torch::randn({3, max_length, KV, D}, opts);
      const torch::Tensor v_cache = torch::randn({3, max_length, KV, D}, opts);
      const int64_t ws_bytes = TltTreeAttentionWorkspaceBytes(B, H, KV, D, max_length);
      torch::Tensor ws = torch::empty({ws_bytes / 4}, opts.dtype(torch::kFloat32));
      torch::Tensor counters =
          torch::zeros({TltDecodeAttentionCounterCount(B, H)}, opts.dtype(torch::kInt32));
      std::vector<torch::Tensor> outs;
      for (int call = 0; call < 2; ++call) {
        torch::Tensor out = torch::full({B, H, D}, 7.0, opts);
        ASSERT_EQ(TltTreeAttention(kernel_dtype, q.data_ptr(), k_cache.data_ptr(),
                                   v_cache.data_ptr(), pos_d.data_ptr<int64_t>(),
                                   base_d.data_ptr<int64_t>(), mask_d.data_ptr<int64_t>(),
                                   slot_d.data_ptr<int64_t>(), out.data_ptr(),
                                   ws.data_ptr<float>(), counters.data_ptr<int>(), B, H, KV, D,
                                   max_length, c10::cuda::getCurrentCUDAStream().stream()),
                  cudaSuccess);
        outs.push_back(out.cpu());
      }
      EXPECT_TRUE(torch::equal(outs[0], outs[1]));
      EXPECT_EQ(counters.sum().item<int64_t>(), 0);
      // The float64 reference, row by row.
      const torch::Tensor q64 = q.cpu().to(torch::kFloat64);
      const torch::Tensor k64 = k_cache.cpu().to(torch::kFloat64);
      const torch::Tensor v64 = v_cache.cpu().to(torch::kFloat64);
      torch::Tensor want = torch::zeros({B, H, D}, torch::kFloat64);
      for (int64_t b = 0; b < B; ++b) {
        if (slots[b] < 0) continue;
        std::vector<int64_t> visible;
        for (int64_t k = 0; k <= positions[b]; ++k) {
          const int64_t j = k - bases[b];
          if (k < bases[b] || k == positions[b] ||
              ((static_cast<uint64_t>(masks[b]) >> j) & 1u) != 0) {
            visible.push_back(k);
          }
        }
        const torch::Tensor index = torch::tensor(visible, torch::kInt64);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t kvh = h / (H / KV);
          const torch::Tensor keys = k64[slots[b]].index_select(0, index).select(1, kvh);
          const torch::Tensor values = v64[slots[b]].index_select(0, index).select(1, kvh);
          const torch::Tensor p =
              torch::softmax(keys.matmul(q64[b][h]) / std::sqrt(static_cast<double>(D)), 0);
          want[b][h] = p.matmul(values);
        }
      }
      const double tolerance = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
      EXPECT_LT(RelDiff(outs[0], want), tolerance);
      EXPECT_EQ(outs[0][49].abs().max().item<double>(), 0.0);  // the padding row
    }
  }
}
#endif

// The drafter through models::CudaDecoder (one kernel concatenating embedding and hidden input,
// the input projection as a GEMV in small buckets and through cuBLAS in larger ones) against the
// eager Drafter::Forward on the same cache contents, float32: a 3-row catch-up chain (GEMV
// path), then 9 more rows (cuBLAS path). ForwardDeviceRows with a gather equals Forward with the
// hidden inputs gathered on the host, bit for bit, eagerly and recorded into a CUDA graph.
TEST(FusedVerifyTest, DrafterStepMatchesEagerDrafter) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  models::Transformer target = TinyQwen(7, 8);
  target->to(torch::kCUDA, torch::kFloat32);
  target->eval();
  Drafter drafter = InitDrafter(target, 3);
  torch::manual_seed(11);
  for (torch::Tensor& p : drafter->parameters()) p.add_(torch::randn_like(p) * 0.05);
  drafter->to(torch::kCUDA, torch::kFloat32);
  const int64_t H = target->config().hidden_size, V = target->config().vocab_size;
  auto options = drafter->CacheOptions(2, 160, torch::kFloat32, torch::kCUDA);
  models::KvCache eager_cache(options), fused_cache(options);
  for (models::KvCache* cache : {&eager_cache, &fused_cache}) ASSERT_TRUE(cache->AllocateSlot().ok());
  models::CudaDecoderOptions decoder_options;
  decoder_options.max_rows = 64;
  std::string why;
  models::Transformer t = target;
  Drafter d = drafter;
  auto decoder = models::CudaDecoder::CreateFromWeights(
      [t, d] { return DrafterDecoderWeights(t, d); }, &fused_cache, decoder_options, &why);
  if (!decoder) GTEST_SKIP() << "no fused decoder: " << why;
  int64_t start = 0;
  // 3 rows (GEMVs), 9 and 64 (cuBLAS; 64: a full catch-up piece, kCatchUpPiece), then 20.
  for (int64_t n : {3, 9, 64, 20}) {
    SCOPED_TRACE(std::to_string(n) + " rows");
    torch::Tensor tokens = torch::randint(V, {n}, torch::kInt64);
    torch::Tensor hidden = torch::randn({n, H}, torch::TensorOptions().device(torch::kCUDA));
    std::vector<models::DecodeRow> rows(n);
    for (int64_t i = 0; i < n; ++i) {  // a chain: row i sees the cache and rows before it
      rows[i].token = tokens[i].item<int64_t>();
      rows[i].position = start + i;
      rows[i].slot = 0;
      rows[i].tree_base = start;
      rows[i].tree_mask = i == 0 ? 0 : (~0ull >> (64 - i));
    }
    auto got = decoder->Forward(rows, hidden);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const torch::Tensor want_hidden =
        drafter->Forward(target, tokens.view({1, n}).to(torch::kCUDA), hidden.view({1, n, H}),
                         models::BatchLayout::Make({start}, {n}, n, {0}, torch::kCUDA),
                         &eager_cache)[0];
    EXPECT_LT(RelDiff(got->hidden, want_hidden), 1e-4);
    EXPECT_LT(RelDiff(got->logits, Drafter::Impl::Logits(target, want_hidden)), 1e-4);
    const torch::Tensor first_logits = got->logits.clone();
    // The same rows from the device, their hidden inputs gathered from a shuffled source.
    std::vector<int64_t> fields;
    for (int f = 0; f < models::CudaDecoder::kDeviceRowFields; ++f) {
      for (const models::DecodeRow& row : rows) {
        const int64_t v[] = {row.token, row.position, row.slot, row.position, row.tree_base,
                             static_cast<int64_t>(row.tree_mask)};
        fields.push_back(v[f]);
      }
    }
    const torch::Tensor device_rows = torch::tensor(fields, torch::kInt64)
                                          .view({models::CudaDecoder::kDeviceRowFields, n})
                                          .to(torch::kCUDA);
    const torch::Tensor order = torch::randperm(n, torch::kInt64).to(torch::kCUDA);
    torch::Tensor source = torch::empty_like(hidden);
    source.index_copy_(0, order, hidden);  // source[order[i]] = hidden[i]
    auto again = decoder->ForwardDeviceRows(device_rows, source, order);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_TRUE(torch::equal(again->logits, first_logits));
    EXPECT_FALSE(decoder->ForwardDeviceRows(device_rows, source, order.narrow(0, 0, n - 1)).ok());
#ifdef TLT_MODELS_CUDA
    // Recorded into a caller's capture, the input kernel gathers from `source` in place (and
    // zero-fills the bucket's padding rows); the replay gives the same logits.
    {
      at::cuda::CUDAGraph graph;
      torch::Tensor captured_logits;
      {
        c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool());
        graph.capture_begin();
        auto in_capture = decoder->ForwardDeviceRows(device_rows, source, order);
        graph.capture_end();
        ASSERT_TRUE(in_capture.ok()) << in_capture.status().ToString();
        captured_logits = in_capture->logits;
      }
      graph.replay();
      torch::cuda::synchronize();
      EXPECT_TRUE(torch::equal(captured_logits, first_logits));
    }
#endif
    for (models::KvCache* cache : {&eager_cache, &fused_cache}) {
      ASSERT_TRUE(cache->SetLength(0, start + n).ok());
    }
    start += n;
  }
}

// The on-device drafting loop (speculative/device_draft.h) against the host loop of
// DraftTreeBuilder with the same untrained drafter: every strategy shape (chains, trees, one
// depth, top-k 1..4) gives the same greedy output (the plain engine's), the same accepted
// lengths and the same trees step by step: the first steps of a shape eager, later ones
// replaying the loop's CUDA graph, also after an in-place drafter weight load.
TEST(FusedVerifyTest, DeviceDraftMatchesHostDraftLoop) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  models::Transformer target = TinyQwen(5, 6);
  std::vector<models::Request> requests;
  for (int i = 0; i < 3; ++i) {
    models::Request r;
    r.prompt = {3 + i, 11, 29, 7 * i + 1, 40};
    r.max_new_tokens = 40;
    requests.push_back(r);
  }
  // Another drafter's weights, loaded in place between the two rounds: the device loop's
  // captured graph must draft with them too.
  models::CheckpointTensors other;
  for (const auto& [name, t] : InitDrafter(target, 9)->NamedTensors()) {
    other.tensors[name] = t.clone();
  }
  for (const char* name : {"4_1_4", "1_4_3", "3_2_4", "4_3_10", "6_4_16"}) {
    SCOPED_TRACE(name);
    std::vector<std::unique_ptr<SpeculativeEngine>> engines;
    std::vector<std::vector<DraftTree>> drafted[2];
    for (bool on_device : {false, true}) {
      SpeculativeEngineOptions o;
      o.strategy = ParseStrategy(name).value();
      o.device = torch::kCUDA;
      o.max_batch_size = 3;
      o.device_draft = on_device;
      o.draft_observer = [&drafted, on_device](const std::vector<DraftTree>& trees) {
        drafted[on_device ? 1 : 0].push_back(trees);
      };
      auto engine = SpeculativeEngine::Create(target, InitDrafter(target, 2), o);
      ASSERT_TRUE(engine.ok()) << engine.status().ToString();
      engines.push_back(std::move(engine).value());
    }
    for (int round = 0; round < 3; ++round) {  // round 2: the other drafter's weights
      SCOPED_TRACE("round " + std::to_string(round));
      if (round == 2) {
        for (auto& e : engines) ASSERT_TRUE(e->LoadDrafterWeights(other).ok());
      }
      std::vector<std::vector<models::RequestResult>> outputs;
      for (auto& e : engines) {
        e->ResetStats();
        auto out = e->Generate(requests);
        ASSERT_TRUE(out.ok()) << out.status().ToString();
        outputs.push_back(*out);
        EXPECT_GT(e->stats().steps, 0);
      }
      for (size_t i = 0; i < requests.size(); ++i) {
        EXPECT_EQ(outputs[1][i].tokens, outputs[0][i].tokens) << "request " << i;
      }
      EXPECT_EQ(engines[1]->stats().accepted_histogram, engines[0]->stats().accepted_histogram);
    }
    // Every step's trees (rounds 1 and 2 replay the loop's captured graphs).
    ASSERT_EQ(drafted[1].size(), drafted[0].size());
    for (size_t step = 0; step < drafted[0].size(); ++step) {
      ASSERT_EQ(drafted[1][step].size(), drafted[0][step].size());
      for (size_t b = 0; b < drafted[0][step].size(); ++b) {
        const DraftTree &got = drafted[1][step][b], &want = drafted[0][step][b];
        EXPECT_EQ(got.tokens, want.tokens) << "step " << step << " request " << b;
        EXPECT_EQ(got.parents, want.parents) << "step " << step << " request " << b;
      }
    }
  }
}

}  // namespace
}  // namespace tlt::speculative
