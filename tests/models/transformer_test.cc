#include "runtime/file_util.h"
#include "models/transformer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "tests/models/test_models.h"

namespace tlt::models {
namespace {

using testing::MaxRelError;
using testing::PerturbParameters;
using testing::ReferenceLogits;
using testing::TinyConfig;
namespace fs = std::filesystem;

TEST(LayersTest, RMSNormMatchesFloat64) {
  torch::manual_seed(1);
  RMSNorm norm(RMSNormOptions(16).eps(1e-5));
  torch::NoGradGuard g;
  norm->weight.uniform_(0.5, 2);
  torch::Tensor x = torch::randn({3, 4, 16});
  torch::Tensor xd = x.to(torch::kFloat64), wd = norm->weight.to(torch::kFloat64);
  torch::Tensor want = wd * xd / torch::sqrt(xd.pow(2).mean(-1, true) + 1e-5);
  EXPECT_LT(MaxRelError(norm(x), want), 1e-6);
  // bfloat16 input: normalized in float32, cast back, then scaled (HF order).
  torch::Tensor yb = norm->forward(x.to(torch::kBFloat16).to(torch::kFloat32));
  EXPECT_LT(MaxRelError(yb, want), 1e-2);
}

TEST(LayersTest, RotaryMatchesPairRotation) {
  const int64_t D = 8;
  RotaryEmbedding rope(D, 500.0);
  torch::Tensor pos = torch::tensor({{0, 3, 7}}, torch::kInt64);
  auto [cos, sin] = rope.CosSin(pos, torch::kFloat32);
  torch::manual_seed(2);
  torch::Tensor x = torch::randn({1, 3, 2, D});
  torch::Tensor y = RotaryEmbedding::Apply(x, cos, sin);
  torch::Tensor xd = x.to(torch::kFloat64);
  torch::Tensor want = xd.clone();
  for (int64_t t = 0; t < 3; ++t) {
    const double p = pos[0][t].item<int64_t>();
    for (int64_t i = 0; i < D / 2; ++i) {
      const double a = p * std::pow(500.0, -2.0 * i / D);
      auto xi = xd.select(1, t).select(-1, i), xj = xd.select(1, t).select(-1, i + D / 2);
      want.select(1, t).select(-1, i).copy_(xi * std::cos(a) - xj * std::sin(a));
      want.select(1, t).select(-1, i + D / 2).copy_(xj * std::cos(a) + xi * std::sin(a));
    }
  }
  EXPECT_LT(MaxRelError(y, want), 1e-5);
}

TEST(LayersTest, AttentionGqaMatchesNaiveFloat64) {
  ModelConfig c = TinyConfig("qwen2", /*heads=*/4, /*kv=*/2, false);
  torch::manual_seed(3);
  Attention attn(c);
  {
    torch::NoGradGuard g;
    for (auto& p : attn->parameters()) p.normal_(0, 0.3);
  }
  const int64_t T = 5, D = c.head_dim;
  torch::Tensor x = torch::randn({1, T, c.hidden_size});
  BatchLayout layout = BatchLayout::Dense(1, T, torch::kCPU);
  RotaryEmbedding rope(D, c.rope_theta);
  auto [cos, sin] = rope.CosSin(layout.positions, torch::kFloat32);
  torch::Tensor y = attn(x, cos, sin, layout, nullptr, 0);
  // Naive: per head, per query position, softmax over earlier keys; no rotary at theta... so
  // rotate with the float64 cos/sin of the same angles.
  torch::NoGradGuard g;
  auto d = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };
  torch::Tensor xd = d(x[0]);
  auto lin = [&](torch::nn::Linear& l) { return torch::matmul(xd, d(l->weight).t()) + d(l->bias); };
  torch::Tensor cd = d(std::get<0>(rope.CosSin(layout.positions, torch::kFloat64))[0]);
  torch::Tensor sd = d(std::get<1>(rope.CosSin(layout.positions, torch::kFloat64))[0]);
  auto rot = [&](torch::Tensor t) {  // [T, h, D]
    torch::Tensor r = torch::cat({-t.narrow(-1, D / 2, D / 2), t.narrow(-1, 0, D / 2)}, -1);
    return t * cd.unsqueeze(1) + r * sd.unsqueeze(1);
  };
  torch::Tensor q = rot(lin(attn->q_proj).view({T, 4, D}));
  torch::Tensor k = rot(lin(attn->k_proj).view({T, 2, D}));
  torch::Tensor v = lin(attn->v_proj).view({T, 2, D});
  torch::Tensor out = torch::zeros({T, 4, D}, torch::kFloat64);
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> s;
      for (int64_t j = 0; j <= t; ++j) {
        s.push_back((q[t][h] * k[j][h / 2]).sum().item<double>() / std::sqrt(double(D)));
      }
      double m = *std::max_element(s.begin(), s.end()), z = 0;
      for (double& e : s) z += (e = std::exp(e - m));
      for (int64_t j = 0; j <= t; ++j) out[t][h] += s[j] / z * v[j][h / 2];
    }
  }
  torch::Tensor want = torch::matmul(out.reshape({T, 4 * D}), d(attn->o_proj->weight).t());
  EXPECT_LT(MaxRelError(y[0], want), 1e-5);
}

struct Shape {
  std::string type;
  int64_t heads, kv_heads;
  bool tied;
  double theta;
  bool llama_bias = false;  // HF Llama attention_bias: q, k, v and o biases
};

class TransformerShapeTest : public ::testing::TestWithParam<Shape> {};

TEST_P(TransformerShapeTest, ForwardMatchesFloat64Reference) {
  const Shape s = GetParam();
  torch::manual_seed(4);
  Transformer model(TinyConfig(s.type, s.heads, s.kv_heads, s.tied, s.theta, 61, s.llama_bias));
  PerturbParameters(model, 5);
  torch::NoGradGuard g;
  torch::Tensor tokens = torch::randint(0, model->config().vocab_size, {7}, torch::kInt64);
  torch::Tensor logits = model->forward(tokens.unsqueeze(0))[0];
  EXPECT_LT(MaxRelError(logits, ReferenceLogits(model, tokens)), 1e-5);
}

TEST_P(TransformerShapeTest, CachedDecodeEqualsFullRecompute) {
  const Shape s = GetParam();
  torch::manual_seed(6);
  Transformer model(TinyConfig(s.type, s.heads, s.kv_heads, s.tied, s.theta, 61, s.llama_bias));
  PerturbParameters(model, 7);
  torch::NoGradGuard g;
  const ModelConfig& c = model->config();
  KvCache cache(KvCacheOptions::ForModel(c, 4, 32, torch::kFloat32, torch::kCPU));
  // Three sequences of different prompt lengths, prefilled together (right-padded), then decoded
  // two chunks: one token each, then a 3-token chunk (as speculative verification does).
  std::vector<int64_t> prompt_lens = {5, 2, 7};
  std::vector<torch::Tensor> seqs;
  std::vector<int64_t> slots;
  for (size_t b = 0; b < 3; ++b) {
    seqs.push_back(torch::randint(0, c.vocab_size, {prompt_lens[b] + 6}, torch::kInt64));
    slots.push_back(cache.AllocateSlot().value());
  }
  auto run = [&](const std::vector<int64_t>& start, const std::vector<int64_t>& count) {
    const int64_t T = *std::max_element(count.begin(), count.end());
    torch::Tensor tokens = torch::zeros({3, T}, torch::kInt64);
    for (int64_t b = 0; b < 3; ++b) {
      tokens[b].narrow(0, 0, count[b]).copy_(seqs[b].narrow(0, start[b], count[b]));
    }
    BatchLayout layout = BatchLayout::Make(start, count, T, slots, torch::kCPU);
    ForwardOutput out =
        model->Forward(tokens, layout, &cache, ForwardOptions().return_hidden(true));
    for (int64_t b = 0; b < 3; ++b) {
      EXPECT_TRUE(cache.SetLength(slots[b], start[b] + count[b]).ok());
      torch::Tensor full =
          model->forward(seqs[b].narrow(0, 0, start[b] + count[b]).unsqueeze(0))[0];
      EXPECT_LT(
          MaxRelError(out.logits[b].narrow(0, 0, count[b]), full.narrow(0, start[b], count[b])),
          1e-5)
          << "row " << b << " start " << start[b];
    }
    return out;
  };
  run({0, 0, 0}, prompt_lens);
  run({5, 2, 7}, {1, 1, 1});
  run({6, 3, 8}, {3, 1, 2});
  // last_token_only picks each row's last real token.
  std::vector<int64_t> start = {9, 4, 10}, count = {1, 1, 1};
  torch::Tensor tokens =
      torch::stack({seqs[0].narrow(0, 9, 1), seqs[1].narrow(0, 4, 1), seqs[2].narrow(0, 10, 1)});
  auto out = model->Forward(tokens, BatchLayout::Make(start, count, 1, slots, torch::kCPU), &cache,
                            ForwardOptions().last_token_only(true).return_hidden(true));
  EXPECT_EQ(out.logits.dim(), 2);
  EXPECT_EQ(out.hidden.sizes(), (std::vector<int64_t>{3, c.hidden_size}));
  torch::Tensor full = model->forward(seqs[1].narrow(0, 0, 5).unsqueeze(0))[0];
  EXPECT_LT(MaxRelError(out.logits[1], full[4]), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, TransformerShapeTest,
                         ::testing::Values(Shape{"llama", 4, 4, false, 10000.0},
                                           Shape{"llama", 4, 2, true, 500.0},
                                           Shape{"llama", 4, 2, false, 10000.0, true},
                                           Shape{"qwen2", 4, 1, true, 1e6},
                                           Shape{"qwen2", 2, 2, false, 10000.0}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                           return info.param.type + "_h" + std::to_string(info.param.heads) +
                                  "_kv" + std::to_string(info.param.kv_heads) +
                                  (info.param.tied ? "_tied" : "_untied") +
                                  (info.param.llama_bias ? "_bias" : "");
                         });

TEST(TransformerTest, PaddedBatchWithoutCacheMatchesSingleRows) {
  torch::manual_seed(8);
  Transformer model(TinyConfig("llama", 4, 2, false));
  torch::NoGradGuard g;
  torch::Tensor a = torch::randint(0, 61, {6}, torch::kInt64);
  torch::Tensor b = torch::randint(0, 61, {3}, torch::kInt64);
  torch::Tensor tokens = torch::zeros({2, 6}, torch::kInt64);
  tokens[0].copy_(a);
  tokens[1].narrow(0, 0, 3).copy_(b);
  auto out = model->Forward(tokens, BatchLayout::Make({0, 0}, {6, 3}, 6, {}, torch::kCPU), nullptr);
  EXPECT_LT(MaxRelError(out.logits[1].narrow(0, 0, 3), model->forward(b.unsqueeze(0))[0]), 1e-5);
  EXPECT_LT(MaxRelError(out.logits[0], model->forward(a.unsqueeze(0))[0]), 1e-5);
}

// Separate rotary positions: without a cache, start only shifts rotary positions, so a layout
// from position 0 with rotary_positions shifted by 3 equals a layout starting at 3; stretched
// rotary positions (a change of relative distances) change the logits, so the override is read.
TEST(TransformerTest, RotaryPositionsOverrideLayoutPositions) {
  torch::manual_seed(14);
  Transformer model(TinyConfig("llama", 4, 2, false));
  PerturbParameters(model, 15);
  torch::NoGradGuard g;
  torch::Tensor tokens = torch::randint(61, {2, 4}, torch::kInt64);
  BatchLayout shifted = BatchLayout::Make({3, 3}, {4, 4}, 4, {}, torch::kCPU);
  BatchLayout overridden = BatchLayout::Make({0, 0}, {4, 4}, 4, {}, torch::kCPU);
  overridden.rotary_positions = overridden.positions + 3;
  torch::Tensor want = model->Forward(tokens, shifted, nullptr).logits;
  torch::Tensor got = model->Forward(tokens, overridden, nullptr).logits;
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6));
  overridden.rotary_positions = overridden.positions * 2;
  torch::Tensor stretched = model->Forward(tokens, overridden, nullptr).logits;
  EXPECT_GT((stretched - want).abs().max().item<double>(), 1e-5);
}

TEST(TransformerTest, ParameterNamesAreHuggingFace) {
  Transformer untied(TinyConfig("qwen2", 4, 2, false));
  auto names = untied->ExpectedShapes();
  for (const char* n :
       {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.q_proj.bias", "model.layers.1.self_attn.o_proj.weight",
        "model.layers.1.mlp.gate_proj.weight", "model.layers.1.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  EXPECT_FALSE(names.count("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_EQ(names.at("model.layers.0.self_attn.k_proj.weight"), (std::vector<int64_t>{16, 32}));
  Transformer tied(TinyConfig("llama", 4, 2, true));
  EXPECT_FALSE(tied->ExpectedShapes().count("lm_head.weight"));
  EXPECT_FALSE(tied->ExpectedShapes().count("model.layers.0.self_attn.q_proj.bias"));
  Transformer biased(TinyConfig("llama", 4, 2, false, 1e4, 61, /*llama_attention_bias=*/true));
  EXPECT_TRUE(biased->ExpectedShapes().count("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_TRUE(biased->ExpectedShapes().count("model.layers.0.self_attn.v_proj.bias"));
}

class TransformerIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tlt_tf_" + std::to_string(::getpid()));
    (void)::tlt::RemoveTree(std::string(dir_));
  }
  void TearDown() override { (void)::tlt::RemoveTree(std::string(dir_)); }
  std::string dir_;
};

TEST_F(TransformerIoTest, SaveLoadRoundTripFloat32AndBfloat16) {
  torch::manual_seed(9);
  Transformer model(TinyConfig("qwen2", 4, 2, true, 1e6));
  PerturbParameters(model, 10);
  ASSERT_TRUE(SaveTransformer(model, dir_, /*max_shard_bytes=*/20000).ok());
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "model.safetensors.index.json"));
  auto loaded = LoadTransformer(dir_, torch::kFloat32);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  torch::NoGradGuard g;
  torch::Tensor tokens = torch::randint(0, 61, {1, 6}, torch::kInt64);
  EXPECT_TRUE(torch::equal((*loaded)->forward(tokens), model->forward(tokens)));
  auto bf16 = LoadTransformer(dir_, torch::kBFloat16);
  ASSERT_TRUE(bf16.ok());
  EXPECT_EQ((*bf16)->model->norm->weight.scalar_type(), torch::kBFloat16);
  EXPECT_LT(MaxRelError((*bf16)->forward(tokens), model->forward(tokens)), 5e-2);
  // Saved in bf16, config says so and loads back as float32 on request.
  ASSERT_TRUE(SaveTransformer(*bf16, dir_ + "_bf16").ok());
  auto cfg = ReadModelConfig(dir_ + "_bf16/config.json");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->torch_dtype, "bfloat16");
  EXPECT_TRUE(LoadTransformer(dir_ + "_bf16", torch::kFloat32).ok());
  (void)::tlt::RemoveTree(std::string(dir_ + "_bf16"));
}

TEST_F(TransformerIoTest, LoadErrorsNameTheTensor) {
  Transformer model(TinyConfig("llama", 4, 2, false));
  ASSERT_TRUE(SaveTransformer(model, dir_).ok());
  TensorMap tensors = model->NamedTensors();
  tensors.erase("model.layers.1.mlp.up_proj.weight");
  ASSERT_TRUE(WriteCheckpointTensors(dir_, tensors).ok());
  auto missing = LoadTransformer(dir_, torch::kFloat32);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("model.layers.1.mlp.up_proj.weight"),
            std::string::npos);
  tensors = model->NamedTensors();
  tensors["model.norm.weight"] = torch::ones({31});
  ASSERT_TRUE(WriteCheckpointTensors(dir_, tensors).ok());
  auto shape = LoadTransformer(dir_, torch::kFloat32);
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("model.norm.weight"), std::string::npos);
  EXPECT_FALSE(LoadTransformer("/nonexistent/dir", torch::kFloat32).ok());
}

TEST(KvCacheTest, SlotsLengthsReleaseRecreate) {
  KvCacheOptions o = KvCacheOptions::ForModel(TinyConfig("llama", 4, 2, false), 2, 16,
                                              torch::kFloat32, torch::kCPU);
  EXPECT_EQ(o.Bytes(), 2 * 2 * 2 * 16 * 2 * 8 * 4);
  EXPECT_EQ(o.SlotsForBudget(o.BytesPerSlot() * 3 + 5), 3);
  KvCache cache(o);
  EXPECT_EQ(cache.keys(1).sizes(), (std::vector<int64_t>{2, 16, 2, 8}));
  auto a = cache.AllocateSlot();
  auto b = cache.AllocateSlot();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(cache.AllocateSlot().ok());
  EXPECT_TRUE(cache.SetLength(*a, 16).ok());
  EXPECT_FALSE(cache.SetLength(*a, 17).ok());
  EXPECT_TRUE(cache.FreeSlot(*a).ok());
  EXPECT_FALSE(cache.FreeSlot(*a).ok());
  EXPECT_EQ(cache.num_free_slots(), 1);
  cache.Release();
  EXPECT_TRUE(cache.released());
  EXPECT_FALSE(cache.keys(0).defined());
  EXPECT_FALSE(cache.AllocateSlot().ok());
  ASSERT_TRUE(cache.Recreate().ok());
  EXPECT_EQ(cache.num_free_slots(), 2);
  EXPECT_EQ(cache.values(0).sizes(), (std::vector<int64_t>{2, 16, 2, 8}));
}

TEST(KvCacheTest, CopyPositionsMovesKeysAndValuesOfEveryLayer) {
  KvCache cache(KvCacheOptions::ForModel(TinyConfig("llama", 4, 2, false), 2, 16,
                                         torch::kFloat32, torch::kCPU));
  auto slot = cache.AllocateSlot();
  ASSERT_TRUE(slot.ok());
  for (int64_t l = 0; l < 2; ++l) {
    cache.keys(l).copy_(torch::randn_like(cache.keys(l)));
    cache.values(l).copy_(torch::randn_like(cache.values(l)));
  }
  std::vector<torch::Tensor> before;
  for (int64_t l = 0; l < 2; ++l) {
    before.push_back(cache.keys(l).clone());
    before.push_back(cache.values(l).clone());
  }
  // Overlapping: position 6 is read (to 4) and written (from 9) in one call.
  ASSERT_TRUE(cache.CopyPositions(*slot, {6, 9}, {4, 6}).ok());
  for (int64_t l = 0; l < 2; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      const torch::Tensor& now = kv == 0 ? cache.keys(l) : cache.values(l);
      const torch::Tensor& old = before[2 * l + kv];
      EXPECT_TRUE(torch::equal(now[*slot][4], old[*slot][6]));
      EXPECT_TRUE(torch::equal(now[*slot][6], old[*slot][9]));
      EXPECT_TRUE(torch::equal(now[*slot][5], old[*slot][5]));
      EXPECT_TRUE(torch::equal(now[1 - *slot], old[1 - *slot]));  // the other slot untouched
    }
  }
  EXPECT_FALSE(cache.CopyPositions(*slot, {3}, {16}).ok());      // past max_length
  EXPECT_FALSE(cache.CopyPositions(1 - *slot, {3}, {4}).ok());   // slot not allocated
  EXPECT_FALSE(cache.CopyPositions(*slot, {3, 4}, {5}).ok());    // sizes differ
  // Several slots in one call.
  auto other = cache.AllocateSlot();
  ASSERT_TRUE(other.ok());
  const torch::Tensor k0 = cache.keys(0).clone(), v1 = cache.values(1).clone();
  ASSERT_TRUE(cache.CopyPositions({*slot, *other, *other}, {1, 2, 7}, {0, 3, 7}).ok());
  EXPECT_TRUE(torch::equal(cache.keys(0)[*slot][0], k0[*slot][1]));
  EXPECT_TRUE(torch::equal(cache.keys(0)[*other][3], k0[*other][2]));
  EXPECT_TRUE(torch::equal(cache.values(1)[*other][3], v1[*other][2]));
  EXPECT_TRUE(torch::equal(cache.keys(0)[*other][7], k0[*other][7]));
  EXPECT_TRUE(torch::equal(cache.keys(0)[*slot][2], k0[*slot][2]));
}

}  // namespace
}  // namespace tlt::models
