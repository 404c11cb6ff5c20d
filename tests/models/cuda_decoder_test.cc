// The fused CUDA decode path (models/cuda_decoder.h) against the eager Transformer::Forward.
// Every test skips without a CUDA device or without the fused decoder in the build.
//
// Tolerances: float32 logits within 1e-4 of the eager path relative to the largest logit (both
// accumulate in float32; the fused attention never rounds to the element type); bfloat16 within
// 5e-2 (eager rounds scores and probabilities to bfloat16, the fused kernel keeps float32).
// Graph replay and eager fused kernels run the same kernels: within 1e-6.
#include "models/cuda_decoder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "models/engine.h"
#include "tests/models/test_models.h"

namespace tlt::models {
namespace {

using testing::PerturbParameters;

// Qwen-like proportions: GQA group 7, head_dim 64, q/k/v bias, tied head.
ModelConfig QwenLikeConfig() {
  ModelConfig c = testing::TinyConfig("qwen2", 7, 1, /*tied=*/true, 1e6, /*vocab=*/97);
  c.hidden_size = 7 * 64;
  c.head_dim = 64;
  c.intermediate_size = 96;
  return c;
}

Transformer MakeModel(const ModelConfig& c, uint64_t seed, torch::Dtype dtype) {
  torch::manual_seed(seed);
  Transformer model(c);
  PerturbParameters(model, seed + 1);
  model->to(torch::kCUDA, dtype);
  model->eval();
  return model;
}

bool FusedAvailable() {
  if (!torch::cuda::is_available()) return false;
  Transformer m = MakeModel(testing::TinyConfig("llama", 4, 2, false), 1, torch::kFloat32);
  KvCache cache(KvCacheOptions::ForModel(m->config(), 1, 8, torch::kFloat32, torch::kCUDA));
  return CudaDecoder::Create(m, &cache, {}) != nullptr;
}

#define SKIP_WITHOUT_FUSED() \
  if (!FusedAvailable()) GTEST_SKIP() << "no CUDA device or no fused decoder in this build"

double RelDiff(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor x = a.to(torch::kFloat64).cpu(), y = b.to(torch::kFloat64).cpu();
  return ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item<double>();
}

struct Case {
  const char* name;
  torch::Dtype dtype;
  double tolerance;
  bool qwen_like;
};

class CudaDecoderLogitsTest : public ::testing::TestWithParam<Case> {};

// Prefill three rows of different lengths (two past the first 128-key attention chunk, so
// several chunks and their combination run; the engine tests below use one chunk) eagerly, then
// four decode steps: fused (graph and eager kernels) vs Transformer::Forward.
TEST_P(CudaDecoderLogitsTest, StepLogitsMatchEagerForward) {
  SKIP_WITHOUT_FUSED();
  const Case& p = GetParam();
  ModelConfig c = p.qwen_like ? QwenLikeConfig() : testing::TinyConfig("llama", 4, 2, false);
  Transformer model = MakeModel(c, 5, p.dtype);
  // 5 slots: buckets 1, 2, 4, 5, so three rows run padded to four.
  KvCache cache(KvCacheOptions::ForModel(c, 5, 1100, p.dtype, torch::kCUDA));
  // graphs / eager_kernels: everything fused (small-batch GEMVs, rotary in attention), with and
  // without graph capture; gemm_*: cuBLAS GEMMs with rotary fused or not.
  auto graphs = CudaDecoder::Create(model, &cache, {true, true, true});
  auto eager_kernels = CudaDecoder::Create(model, &cache, {false, true, true});
  auto gemm_fused_rotary = CudaDecoder::Create(model, &cache, {false, false, true});
  auto gemm_rotary_kernel = CudaDecoder::Create(model, &cache, {false, false, false});
  ASSERT_TRUE(graphs && eager_kernels && gemm_fused_rotary && gemm_rotary_kernel);
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> lengths = {5, 520, 600}, slots = {4, 0, 2};
  const int64_t T = 600;
  torch::manual_seed(6);
  torch::Tensor prompt = torch::randint(c.vocab_size, {3, T}, torch::kInt64);
  for (int64_t b = 0; b < 3; ++b) ASSERT_TRUE(cache.AllocateSlot().ok());
  ASSERT_TRUE(cache.AllocateSlot().ok());
  ASSERT_TRUE(cache.AllocateSlot().ok());
  BatchLayout prefill = BatchLayout::Make({0, 0, 0}, lengths, T, slots, torch::kCUDA);
  model->Forward(prompt.to(torch::kCUDA), prefill, &cache);
  for (int64_t b = 0; b < 3; ++b) ASSERT_TRUE(cache.SetLength(slots[b], lengths[b]).ok());
  std::vector<int64_t> next = {3, 11, 42};
  for (int step = 0; step < 4; ++step) {
    std::vector<int64_t> start;
    for (int64_t b = 0; b < 3; ++b) start.push_back(cache.length(slots[b]));
    BatchLayout layout = BatchLayout::Make(start, {1, 1, 1}, 1, slots, torch::kCUDA);
    torch::Tensor tokens = torch::tensor(next, torch::kInt64).view({3, 1}).to(torch::kCUDA);
    torch::Tensor want =
        model->Forward(tokens, layout, &cache, ForwardOptions().last_token_only(true)).logits;
    std::vector<DecodeRow> rows(3);
    for (int64_t b = 0; b < 3; ++b) {
      rows[b].token = next[b];
      rows[b].position = start[b];
      rows[b].slot = slots[b];
    }
    for (CudaDecoder* gemm : {gemm_rotary_kernel.get(), gemm_fused_rotary.get()}) {
      auto got = gemm->DecodeLogits(rows);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_LT(RelDiff(*got, want), p.tolerance) << p.name << " gemm step " << step;
    }
    auto fused = eager_kernels->DecodeLogits(rows);
    ASSERT_TRUE(fused.ok()) << fused.status().ToString();
    auto replayed = graphs->DecodeLogits(rows);
    ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
    EXPECT_LT(RelDiff(*fused, want), p.tolerance) << p.name << " step " << step;
    EXPECT_LT(RelDiff(*replayed, *fused), 1e-6) << p.name << " step " << step;
    if (p.dtype == torch::kFloat32) {
      EXPECT_TRUE(torch::equal(fused->argmax(-1), want.argmax(-1))) << "step " << step;
    }
    for (int64_t b = 0; b < 3; ++b) {
      ASSERT_TRUE(cache.SetLength(slots[b], start[b] + 1).ok());
      next[b] = want[b].argmax().item<int64_t>();
    }
  }
  EXPECT_EQ(graphs->num_graphs(), 1);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaDecoderLogitsTest,
                         ::testing::Values(Case{"float32 llama", torch::kFloat32, 1e-4, false},
                                           Case{"float32 qwen-like", torch::kFloat32, 1e-4, true},
                                           Case{"bfloat16 qwen-like", torch::kBFloat16, 5e-2, true},
                                           Case{"float16 llama", torch::kFloat16, 5e-2, false}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

// Small-batch GEMV path (gpu/gemv_kernels.h) at exactly R rows (the cache has R slots, so the
// last bucket is R): R = 1, 2, 3, 8, float32 and bfloat16, on the qwen-like model (q/k/v bias,
// tied head, odd vocab) and a wider one (hidden 1024: k split over several warps). Each step:
// GEMV logits (eager kernels and graph) vs Transformer::Forward with the tolerances above, vs
// the cuBLAS fused path, graph == eager kernels; the final-normed hidden state vs the eager
// one; Decode's greedy tokens == the argmax of the GEMV path's logits (== eager's in float32).
struct GemvCase {
  int64_t rows;
  torch::Dtype dtype;
  bool wide;
};

class CudaDecoderGemvTest : public ::testing::TestWithParam<GemvCase> {};

TEST_P(CudaDecoderGemvTest, MatchesEagerForward) {
  SKIP_WITHOUT_FUSED();
  const GemvCase& p = GetParam();
  const bool f32 = p.dtype == torch::kFloat32;
  const double tolerance = f32 ? 1e-4 : 5e-2;
  ModelConfig c = QwenLikeConfig();
  if (p.wide) {
    c = testing::TinyConfig("qwen2", 16, 2, /*tied=*/false, 1e6, /*vocab=*/1000);
    c.hidden_size = 16 * 64;
    c.head_dim = 64;
    c.intermediate_size = 2048;
  }
  Transformer model = MakeModel(c, 21, p.dtype);
  const int64_t R = p.rows;
  KvCache cache(KvCacheOptions::ForModel(c, R, 64, p.dtype, torch::kCUDA));
  CudaDecoderOptions gemv_eager, gemv_graphs, cublas;
  gemv_eager.use_graphs = false;
  cublas.use_graphs = false;
  cublas.small_batch_gemv = false;
  auto eager_kernels = CudaDecoder::Create(model, &cache, gemv_eager);
  auto graphs = CudaDecoder::Create(model, &cache, gemv_graphs);
  auto gemm = CudaDecoder::Create(model, &cache, cublas);
  ASSERT_TRUE(eager_kernels && graphs && gemm);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> lengths, slots, next;
  for (int64_t b = 0; b < R; ++b) {
    lengths.push_back(3 + 5 * b % 17);
    slots.push_back(b);
    next.push_back((7 * b + 2) % c.vocab_size);
    ASSERT_TRUE(cache.AllocateSlot().ok());
  }
  const int64_t T = *std::max_element(lengths.begin(), lengths.end());
  torch::manual_seed(22);
  torch::Tensor prompt = torch::randint(c.vocab_size, {R, T}, torch::kInt64).to(torch::kCUDA);
  model->Forward(prompt,
                 BatchLayout::Make(std::vector<int64_t>(R, 0), lengths, T, slots, torch::kCUDA),
                 &cache);
  for (int64_t b = 0; b < R; ++b) ASSERT_TRUE(cache.SetLength(slots[b], lengths[b]).ok());
  for (int step = 0; step < 3; ++step) {
    std::vector<int64_t> start;
    for (int64_t b = 0; b < R; ++b) start.push_back(cache.length(slots[b]));
    BatchLayout layout =
        BatchLayout::Make(start, std::vector<int64_t>(R, 1), 1, slots, torch::kCUDA);
    torch::Tensor tokens = torch::tensor(next, torch::kInt64).view({R, 1}).to(torch::kCUDA);
    ForwardOutput want = model->Forward(tokens, layout, &cache,
                                        ForwardOptions().last_token_only(true).return_hidden(true));
    std::vector<DecodeRow> rows(R);
    for (int64_t b = 0; b < R; ++b) {
      rows[b].token = next[b];
      rows[b].position = start[b];
      rows[b].slot = slots[b];
      rows[b].params.temperature = 0;  // greedy: tokens from the step's own argmax
    }
    const std::string at = "rows " + std::to_string(R) + " step " + std::to_string(step);
    auto cublas_logits = gemm->DecodeLogits(rows);
    auto fused = eager_kernels->DecodeLogits(rows);
    auto replayed = graphs->DecodeLogits(rows);
    ASSERT_TRUE(cublas_logits.ok() && fused.ok() && replayed.ok()) << at;
    EXPECT_LT(RelDiff(*fused, want.logits), tolerance) << at;
    EXPECT_LT(RelDiff(*fused, *cublas_logits), tolerance) << at;
    EXPECT_LT(RelDiff(*replayed, *fused), 1e-6) << at;
    if (f32) EXPECT_TRUE(torch::equal(fused->argmax(-1), want.logits.argmax(-1))) << at;
    auto decoded = eager_kernels->Decode(rows, /*want_hidden=*/true);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    torch::Tensor own_argmax = fused->argmax(-1).cpu();
    for (int64_t b = 0; b < R; ++b) {
      EXPECT_EQ(decoded->tokens[b], own_argmax[b].item<int64_t>()) << at << " row " << b;
      EXPECT_EQ(decoded->logprobs[b], 0.f) << at;
    }
    ASSERT_TRUE(decoded->hidden.defined());
    EXPECT_LT(RelDiff(decoded->hidden, want.hidden), f32 ? 1e-4 : 5e-2) << at;
    auto greedy_cublas = gemm->Decode(rows, false);
    ASSERT_TRUE(greedy_cublas.ok());
    torch::Tensor cublas_argmax = cublas_logits->argmax(-1).cpu();
    for (int64_t b = 0; b < R; ++b) {
      EXPECT_EQ(greedy_cublas->tokens[b], cublas_argmax[b].item<int64_t>()) << at;
    }
    for (int64_t b = 0; b < R; ++b) {
      ASSERT_TRUE(cache.SetLength(slots[b], start[b] + 1).ok());
      next[b] = want.logits[b].argmax().item<int64_t>();
    }
  }
  EXPECT_EQ(graphs->num_graphs(), 1);
}

INSTANTIATE_TEST_SUITE_P(
    Rows, CudaDecoderGemvTest,
    ::testing::Values(GemvCase{1, torch::kFloat32, false}, GemvCase{2, torch::kFloat32, false},
                      GemvCase{3, torch::kFloat32, false}, GemvCase{8, torch::kFloat32, false},
                      GemvCase{1, torch::kBFloat16, false}, GemvCase{2, torch::kBFloat16, false},
                      GemvCase{3, torch::kBFloat16, false}, GemvCase{8, torch::kBFloat16, false},
                      GemvCase{1, torch::kFloat32, true}, GemvCase{3, torch::kFloat32, true},
                      GemvCase{1, torch::kBFloat16, true}, GemvCase{8, torch::kBFloat16, true}),
    [](const auto& info) {
      return "r" + std::to_string(info.param.rows) +
             (info.param.dtype == torch::kFloat32 ? "_float32" : "_bfloat16") +
             (info.param.wide ? "_wide" : "");
    });

// Many rows: from 64 (row, kv head) pairs up the attention kernel gives each block all query
// heads of a kv head (G = 2 for the llama config, 7 for the qwen-like one) and splits rows into
// chunks of >= 256 keys, so rows of up to 700 keys use one to three chunks. Fused decode steps
// (eager kernels and graph replay) vs Transformer::Forward. With tc_gemm the projections run
// as tensor-core GEMMs (gpu/skinny_gemm.h: 12, 40 and 64 rows cover one, three and four
// 16-row tiles; bfloat16 and float16). With gemv_rows 8 an 8-row bucket runs the GEMVs.
struct ManyRowsCase {
  int64_t rows;
  bool qwen_like;
  torch::Dtype dtype;
  bool tc_gemm = false;
  int64_t gemv_rows = 4;  // CudaDecoderOptions::gemv_max_rows
};

class CudaDecoderManyRowsTest : public ::testing::TestWithParam<ManyRowsCase> {};

TEST_P(CudaDecoderManyRowsTest, MatchesEagerForward) {
  SKIP_WITHOUT_FUSED();
  const ManyRowsCase& p = GetParam();
  const bool f32 = p.dtype == torch::kFloat32;
  ModelConfig c = p.qwen_like ? QwenLikeConfig() : testing::TinyConfig("llama", 4, 2, false);
  Transformer model = MakeModel(c, 31, p.dtype);
  const int64_t R = p.rows;
  KvCache cache(KvCacheOptions::ForModel(c, R, 720, p.dtype, torch::kCUDA));
  CudaDecoderOptions eager_options, graph_options;
  eager_options.use_graphs = false;
  eager_options.tensor_core_gemm = graph_options.tensor_core_gemm = p.tc_gemm;
  eager_options.gemv_max_rows = graph_options.gemv_max_rows = p.gemv_rows;
  auto eager_kernels = CudaDecoder::Create(model, &cache, eager_options);
  auto graphs = CudaDecoder::Create(model, &cache, graph_options);
  ASSERT_TRUE(eager_kernels && graphs);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> lengths, slots, next;
  for (int64_t b = 0; b < R; ++b) {
    lengths.push_back(1 + (b * 97) % 700);
    slots.push_back(b);
    next.push_back((5 * b + 1) % c.vocab_size);
    ASSERT_TRUE(cache.AllocateSlot().ok());
  }
  const int64_t T = *std::max_element(lengths.begin(), lengths.end());
  torch::manual_seed(32);
  torch::Tensor prompt = torch::randint(c.vocab_size, {R, T}, torch::kInt64).to(torch::kCUDA);
  model->Forward(prompt,
                 BatchLayout::Make(std::vector<int64_t>(R, 0), lengths, T, slots, torch::kCUDA),
                 &cache);
  for (int64_t b = 0; b < R; ++b) ASSERT_TRUE(cache.SetLength(slots[b], lengths[b]).ok());
  for (int step = 0; step < 2; ++step) {
    std::vector<int64_t> start;
    for (int64_t b = 0; b < R; ++b) start.push_back(cache.length(slots[b]));
    BatchLayout layout =
        BatchLayout::Make(start, std::vector<int64_t>(R, 1), 1, slots, torch::kCUDA);
    torch::Tensor tokens = torch::tensor(next, torch::kInt64).view({R, 1}).to(torch::kCUDA);
    torch::Tensor want =
        model->Forward(tokens, layout, &cache, ForwardOptions().last_token_only(true)).logits;
    std::vector<DecodeRow> rows(R);
    for (int64_t b = 0; b < R; ++b) {
      rows[b].token = next[b];
      rows[b].position = start[b];
      rows[b].slot = slots[b];
    }
    const std::string at = "rows " + std::to_string(R) + " step " + std::to_string(step);
    auto fused = eager_kernels->DecodeLogits(rows);
    auto replayed = graphs->DecodeLogits(rows);
    ASSERT_TRUE(fused.ok() && replayed.ok()) << at;
    EXPECT_LT(RelDiff(*fused, want), f32 ? 1e-4 : 5e-2) << at;
    EXPECT_LT(RelDiff(*replayed, *fused), 1e-6) << at;
    if (f32) EXPECT_TRUE(torch::equal(fused->argmax(-1), want.argmax(-1))) << at;
    for (int64_t b = 0; b < R; ++b) {
      ASSERT_TRUE(cache.SetLength(slots[b], start[b] + 1).ok());
      next[b] = want[b].argmax().item<int64_t>();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaDecoderManyRowsTest,
                         ::testing::Values(ManyRowsCase{32, false, torch::kFloat32},
                                           ManyRowsCase{64, true, torch::kFloat32},
                                           ManyRowsCase{64, true, torch::kBFloat16},
                                           ManyRowsCase{12, true, torch::kBFloat16, true},
                                           ManyRowsCase{40, true, torch::kBFloat16, true},
                                           ManyRowsCase{64, true, torch::kBFloat16, true},
                                           ManyRowsCase{32, false, torch::kFloat16, true},
                                           ManyRowsCase{8, true, torch::kBFloat16, false, 8}),
                         [](const auto& info) {
                           const torch::Dtype d = info.param.dtype;
                           return std::string(info.param.qwen_like ? "qwen_like_" : "llama_") +
                                  std::to_string(info.param.rows) +
                                  (d == torch::kFloat32    ? "_float32"
                                   : d == torch::kBFloat16 ? "_bfloat16"
                                                           : "_float16") +
                                  (info.param.tc_gemm ? "_tensor_core_gemm" : "") +
                                  (info.param.gemv_rows >= info.param.rows ? "_gemv" : "");
                         });

std::unique_ptr<Engine> CudaEngine(Transformer model, bool fused, int64_t slots = 10) {
  EngineOptions o;
  o.device = torch::kCUDA;
  o.dtype = torch::kFloat32;
  o.max_batch_size = slots;
  o.max_sequence_length = 64;
  o.fused_decode = fused;
  auto e = Engine::Create(std::move(model), o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

// 14 requests of different lengths: with 10 slots the decode batches run through buckets of
// 10 (cuBLAS GEMMs) down to 1 (small-batch GEMVs).
std::vector<Request> MixedRequests() {
  std::vector<Request> out;
  for (int i = 0; i < 14; ++i) {
    Request r;
    r.prompt = {static_cast<int64_t>(3 + i), 7, static_cast<int64_t>(11 * i % 50)};
    r.max_new_tokens = 4 + 3 * i % 40;
    r.seed = 100 + i;
    r.temperature = i % 3 == 0 ? 0.0 : 0.8;  // greedy, sampled, filtered
    r.top_k = i % 3 == 2 ? 10 : 0;
    r.top_p = i % 3 == 2 ? 0.9 : 1.0;
    r.return_hidden_states = i == 1;
    out.push_back(r);
  }
  return out;
}

// Continuous batching (14 requests, 10 slots) with greedy and seeded sampled requests: the same
// tokens with and without the fused path (float32), log-probs within 1e-4.
TEST(CudaDecoderEngineTest, SameTokensAsEagerEngine) {
  SKIP_WITHOUT_FUSED();
  ModelConfig c = testing::TinyConfig("llama", 4, 2, false);
  auto eager = CudaEngine(MakeModel(c, 8, torch::kFloat32), false);
  auto fused = CudaEngine(MakeModel(c, 8, torch::kFloat32), true);
  ASSERT_FALSE(eager->fused_decode_active());
  ASSERT_TRUE(fused->fused_decode_active());
  auto want = eager->Generate(MixedRequests());
  auto got = fused->Generate(MixedRequests());
  ASSERT_TRUE(want.ok() && got.ok()) << got.status().ToString();
  for (size_t i = 0; i < want->size(); ++i) {
    EXPECT_EQ((*got)[i].tokens, (*want)[i].tokens) << "request " << i;
    ASSERT_EQ((*got)[i].logprobs.size(), (*want)[i].logprobs.size());
    for (size_t t = 0; t < (*want)[i].logprobs.size(); ++t) {
      EXPECT_NEAR((*got)[i].logprobs[t], (*want)[i].logprobs[t], 1e-4);
    }
  }
  ASSERT_TRUE((*got)[1].hidden_states.defined());
  EXPECT_LT(RelDiff((*got)[1].hidden_states, (*want)[1].hidden_states), 1e-4);
  EXPECT_GE(fused->num_cuda_graphs(), 2);  // several batch sizes ran
}

// Graphs survive in-place weight reloads (same graphs, new weights) and are recaptured after
// the cache is released and re-created.
TEST(CudaDecoderEngineTest, GraphsAcrossLoadWeightsAndCacheRelease) {
  SKIP_WITHOUT_FUSED();
  ModelConfig c = testing::TinyConfig("qwen2", 4, 2, true);
  auto eager = CudaEngine(MakeModel(c, 9, torch::kFloat32), false);
  auto fused = CudaEngine(MakeModel(c, 9, torch::kFloat32), true);
  auto first = fused->Generate(MixedRequests());
  ASSERT_TRUE(first.ok());
  const int64_t graphs = fused->num_cuda_graphs();
  Transformer other = MakeModel(c, 10, torch::kFloat32);
  CheckpointTensors weights;
  for (const auto& [name, t] : other->NamedTensors()) weights.tensors[name] = t;
  ASSERT_TRUE(eager->LoadWeights(weights).ok());
  ASSERT_TRUE(fused->LoadWeights(weights).ok());
  auto want = eager->Generate(MixedRequests());
  auto got = fused->Generate(MixedRequests());
  ASSERT_TRUE(want.ok() && got.ok());
  for (size_t i = 0; i < want->size(); ++i) EXPECT_EQ((*got)[i].tokens, (*want)[i].tokens);
  EXPECT_EQ(fused->num_cuda_graphs(), graphs);
  ASSERT_TRUE(fused->ReleaseCache().ok());
  EXPECT_EQ(fused->num_cuda_graphs(), 0);
  ASSERT_TRUE(fused->RecreateCache().ok());
  auto again = fused->Generate(MixedRequests());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  for (size_t i = 0; i < want->size(); ++i) EXPECT_EQ((*again)[i].tokens, (*want)[i].tokens);
  EXPECT_GT(fused->num_cuda_graphs(), 0);
}

// Parameters moved to another dtype after the decoder was made: the next step is an error that
// names the placement (the kernels would read float32 data as bfloat16), and the decoder works
// again once they are back.
TEST(CudaDecoderTest, MovedParametersGiveAnError) {
  SKIP_WITHOUT_FUSED();
  ModelConfig c = QwenLikeConfig();
  Transformer model = MakeModel(c, 41, torch::kBFloat16);
  KvCache cache(KvCacheOptions::ForModel(c, 2, 32, torch::kBFloat16, torch::kCUDA));
  auto decoder = CudaDecoder::Create(model, &cache, {});
  ASSERT_TRUE(decoder);
  ASSERT_TRUE(cache.AllocateSlot().ok());
  std::vector<DecodeRow> rows(1);
  rows[0].token = 3;
  auto before = decoder->DecodeLogits(rows);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  model->to(torch::kCUDA, torch::kFloat32);
  auto moved = decoder->DecodeLogits(rows);
  ASSERT_FALSE(moved.ok());
  EXPECT_NE(moved.status().ToString().find("device/dtype"), std::string::npos)
      << moved.status().ToString();
  model->to(torch::kCUDA, torch::kBFloat16);
  auto back = decoder->DecodeLogits(rows);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_LT(RelDiff(*back, *before), 1e-6);
}

// FusedPrefill (prompts as 64-row chains through the decoder) against the eager prefill: the
// last token's logits, every prompt token's hidden state and the cache rows it writes.
// Lengths 5, 64, 70 and 150 cover one chunk, an exact chunk and chunks that straddle steps.
TEST(FusedPrefillTest, MatchesEagerPrefill) {
  SKIP_WITHOUT_FUSED();
  torch::NoGradGuard no_grad;
  ModelConfig c = QwenLikeConfig();
  Transformer model = MakeModel(c, 11, torch::kFloat32);
  KvCacheOptions o = KvCacheOptions::ForModel(c, 4, 200, torch::kFloat32, torch::kCUDA);
  KvCache eager_cache(o), fused_cache(o);
  CudaDecoderOptions options;
  options.max_rows = 128;  // 289 prompt tokens: several steps
  auto decoder = CudaDecoder::Create(model, &fused_cache, options);
  ASSERT_TRUE(decoder);
  const std::vector<int64_t> lengths = {5, 64, 70, 150}, slots = {2, 0, 3, 1};
  const int64_t T = 150;
  torch::manual_seed(12);
  torch::Tensor tokens = torch::randint(c.vocab_size, {4, T}, torch::kInt64);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t b = 0; b < 4; ++b) {
    ASSERT_TRUE(eager_cache.AllocateSlot().ok());
    ASSERT_TRUE(fused_cache.AllocateSlot().ok());
    prompts.emplace_back(tokens[b].data_ptr<int64_t>(), tokens[b].data_ptr<int64_t>() + lengths[b]);
  }
  EXPECT_EQ(FusedPrefillSteps(*decoder, lengths), 4);  // {5, 64}, {64, 64}, {6, 64}, {22}
  BatchLayout layout = BatchLayout::Make({0, 0, 0, 0}, lengths, T, slots, torch::kCUDA);
  ForwardOutput want =
      model->Forward(tokens.to(torch::kCUDA), layout, &eager_cache,
                     ForwardOptions().last_token_only(true).return_all_hidden(true));
  auto got = FusedPrefill(*decoder, prompts, {0, 0, 0, 0}, slots, /*all_hidden=*/true);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_LT(RelDiff(got->last_logits, want.logits), 1e-4);
  for (int64_t b = 0; b < 4; ++b) {
    EXPECT_LT(RelDiff(got->all_hidden[b], want.all_hidden[b].narrow(0, 0, lengths[b])), 1e-4)
        << "prompt " << b;
    EXPECT_LT(RelDiff(got->last_hidden[b], want.all_hidden[b][lengths[b] - 1]), 1e-4);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      EXPECT_LT(RelDiff(fused_cache.keys(l)[slots[b]].narrow(0, 0, lengths[b]),
                        eager_cache.keys(l)[slots[b]].narrow(0, 0, lengths[b])),
                1e-5);
      EXPECT_LT(RelDiff(fused_cache.values(l)[slots[b]].narrow(0, 0, lengths[b]),
                        eager_cache.values(l)[slots[b]].narrow(0, 0, lengths[b])),
                1e-5);
    }
  }
  EXPECT_TRUE(torch::equal(got->last_logits.argmax(-1), want.logits.argmax(-1)));
  EXPECT_FALSE(FusedPrefill(*decoder, {{}}, {0}, {0}, false).ok());  // empty prompt
}

}  // namespace
}  // namespace tlt::models
