#include "models/engine.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/models/test_models.h"

namespace tlt::models {
namespace {

using testing::PerturbParameters;
using testing::TinyConfig;

// qwen2: tied head with bias; llama: untied head with GQA (less peaked next-token distributions).
Transformer TinyModel(uint64_t seed, const std::string& type = "llama") {
  torch::manual_seed(seed);
  Transformer model(TinyConfig(type, 4, 2, type == "qwen2"));
  PerturbParameters(model, seed + 1);
  if (model->lm_head) {
    torch::NoGradGuard g;
    model->lm_head->weight.normal_(0, 0.3);
  }
  return model;
}

// Greedy continuation by full recompute of the dense forward at every step.
std::vector<int64_t> ReferenceGreedy(Transformer& model, std::vector<int64_t> ids, int64_t n) {
  torch::NoGradGuard g;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor logits = model->forward(torch::tensor(ids, torch::kInt64).unsqueeze(0))[0][-1];
    out.push_back(logits.argmax().item<int64_t>());
    ids.push_back(out.back());
  }
  return out;
}

std::unique_ptr<Engine> MakeEngine(Transformer model, int64_t slots, int64_t max_len = 64) {
  EngineOptions o;
  o.max_batch_size = slots;
  o.max_sequence_length = max_len;
  auto e = Engine::Create(std::move(model), o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

Request Greedy(std::vector<int64_t> prompt, int64_t n) {
  Request r;
  r.prompt = std::move(prompt);
  r.max_new_tokens = n;
  r.temperature = 0;
  return r;
}

TEST(EngineTest, GreedyMatchesFullRecomputeWithContinuousBatching) {
  Transformer reference = TinyModel(20, "qwen2");
  auto engine = MakeEngine(TinyModel(20, "qwen2"), /*slots=*/2);
  // Five requests, two slots: requests wait, join as others leave (different lengths).
  std::vector<Request> requests = {Greedy({3, 4, 5}, 6), Greedy({7}, 2), Greedy({9, 8, 7, 6, 5}, 5),
                                   Greedy({1, 2}, 7), Greedy({11, 12, 13, 14}, 3)};
  auto results = engine->Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  for (size_t i = 0; i < requests.size(); ++i) {
    const RequestResult& r = (*results)[i];
    EXPECT_EQ(r.tokens, ReferenceGreedy(reference, requests[i].prompt, requests[i].max_new_tokens))
        << "request " << i;
    EXPECT_EQ(r.finish_reason, FinishReason::kLength);
    for (float lp : r.logprobs) EXPECT_EQ(lp, 0.0f);
  }
  EXPECT_TRUE(engine->idle());
}

TEST(EngineTest, SampledTokensSameAloneAndInBatch) {
  Request r;
  r.prompt = {5, 6, 7};
  r.max_new_tokens = 12;
  r.temperature = 0.9;
  r.top_k = 20;
  r.top_p = 0.95;
  r.seed = 1234;
  auto alone = MakeEngine(TinyModel(21), 4)->Generate({r});
  ASSERT_TRUE(alone.ok());
  std::vector<Request> batch;
  for (int i = 0; i < 5; ++i) {
    Request other = r;
    other.prompt = {static_cast<int64_t>(10 + i), 3};
    other.seed = 99 + i;
    other.max_new_tokens = 3 + 2 * i;
    batch.push_back(other);
  }
  batch.insert(batch.begin() + 2, r);
  auto together = MakeEngine(TinyModel(21), 3)->Generate(batch);
  ASSERT_TRUE(together.ok());
  EXPECT_EQ((*together)[2].tokens, (*alone)[0].tokens);
  ASSERT_EQ((*together)[2].logprobs.size(), (*alone)[0].logprobs.size());
  for (size_t i = 0; i < (*alone)[0].logprobs.size(); ++i) {
    EXPECT_NEAR((*together)[2].logprobs[i], (*alone)[0].logprobs[i], 1e-4);
  }
  // A different seed gives a different continuation (overwhelmingly likely).
  r.seed = 4321;
  auto other = MakeEngine(TinyModel(21), 1)->Generate({r});
  EXPECT_NE((*other)[0].tokens, (*alone)[0].tokens);
}

TEST(EngineTest, LogProbsAndHiddenStatesMatchRecompute) {
  Transformer reference = TinyModel(22);
  auto engine = MakeEngine(TinyModel(22), 2);
  Request r;
  r.prompt = {2, 4, 6, 8};
  r.max_new_tokens = 5;
  r.seed = 7;
  r.return_hidden_states = true;
  auto res = engine->Generate({r, Greedy({1, 1}, 3)});
  ASSERT_TRUE(res.ok());
  const RequestResult& out = (*res)[0];
  ASSERT_EQ(out.hidden_states.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_FALSE((*res)[1].hidden_states.defined());
  std::vector<int64_t> ids = r.prompt;
  ids.insert(ids.end(), out.tokens.begin(), out.tokens.end());
  torch::NoGradGuard g;
  torch::Tensor tokens = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  ForwardOutput full =
      reference->Forward(tokens, BatchLayout::Dense(1, tokens.size(1), torch::kCPU), nullptr,
                         ForwardOptions().return_hidden(true));
  torch::Tensor logprobs = torch::log_softmax(full.logits[0], -1);
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t pos = 3 + i;  // the position whose output predicted generated token i
    EXPECT_NEAR(out.logprobs[i], logprobs[pos][out.tokens[i]].item<float>(), 1e-4);
    EXPECT_TRUE(torch::allclose(out.hidden_states[i], full.hidden[0][pos], 1e-4, 1e-5));
  }
}

TEST(EngineTest, PromptHiddenStatesMatchDenseForward) {
  Transformer reference = TinyModel(31);
  auto engine = MakeEngine(TinyModel(31), 2);
  Request r = Greedy({2, 4, 6, 8, 10}, 3);
  r.return_prompt_hidden_states = true;
  auto res = engine->Generate({r, Greedy({1, 1}, 2)});
  ASSERT_TRUE(res.ok());
  const torch::Tensor& got = (*res)[0].prompt_hidden_states;
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_FALSE((*res)[1].prompt_hidden_states.defined());
  torch::NoGradGuard g;
  torch::Tensor tokens = torch::tensor(r.prompt, torch::kInt64).unsqueeze(0);
  ForwardOutput full = reference->Forward(tokens, BatchLayout::Dense(1, 5, torch::kCPU), nullptr,
                                          ForwardOptions().return_hidden(true));
  EXPECT_TRUE(torch::allclose(got, full.hidden[0], 1e-4, 1e-5));
}

TEST(EngineTest, StopTokensLengthLimitAndCallbacks) {
  Transformer reference = TinyModel(23);
  const std::vector<int64_t> greedy = ReferenceGreedy(reference, {3, 1, 4}, 6);
  auto engine = MakeEngine(TinyModel(23), 4, /*max_len=*/8);
  std::vector<std::pair<RequestId, FinishReason>> finished;
  auto record = [&](const RequestResult& r) { finished.push_back({r.id, r.finish_reason}); };
  Request stop = Greedy({3, 1, 4}, 6);
  stop.stop_token_ids = {greedy[2]};
  ASSERT_NE(greedy[0], greedy[2]) << "pick another seed: the stop token comes first";
  auto a = engine->Submit(stop, record);
  auto b = engine->Submit(Greedy({3, 1, 4, 1, 5, 9}, 10), record);  // cut by max_len 8
  auto c = engine->Submit(Greedy({2}, 1), record);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(engine->Step().ok());  // prefill: c finishes (one token)
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_EQ(finished[0].first, *c);
  ASSERT_TRUE(engine->RunUntilIdle().ok());
  ASSERT_EQ(finished.size(), 3u);
  EXPECT_EQ(finished[1], std::make_pair(*b, FinishReason::kLength));
  // The stop request finished on the third token unless the stop token appeared earlier.
  EXPECT_EQ(finished[2].second, FinishReason::kStop);
  EXPECT_FALSE(engine->Submit(Greedy({}, 3)).ok());
  EXPECT_FALSE(engine->Submit(Greedy({1, 2, 3, 4, 5, 6, 7, 8}, 3)).ok());
  EXPECT_FALSE(engine->Submit(Greedy({1000}, 3)).ok());
}

TEST(EngineTest, StopTokenIsLastToken) {
  Transformer reference = TinyModel(24);
  const std::vector<int64_t> greedy = ReferenceGreedy(reference, {5, 5}, 6);
  auto engine = MakeEngine(TinyModel(24), 1);
  Request r = Greedy({5, 5}, 6);
  r.stop_token_ids = {greedy[3]};
  auto res = engine->Generate({r});
  ASSERT_TRUE(res.ok());
  const auto& t = (*res)[0].tokens;
  const size_t first = std::find(greedy.begin(), greedy.end(), greedy[3]) - greedy.begin();
  EXPECT_EQ(t, std::vector<int64_t>(greedy.begin(), greedy.begin() + first + 1));
  EXPECT_EQ((*res)[0].finish_reason, FinishReason::kStop);
}

TEST(EngineTest, LoadWeightsBetweenStepsKeepsCache) {
  Transformer next = TinyModel(26);
  auto engine = MakeEngine(TinyModel(25), 2);
  ASSERT_TRUE(engine->Submit(Greedy({1, 2, 3}, 8)).ok());
  ASSERT_TRUE(engine->Step().ok());
  ASSERT_TRUE(engine->Step().ok());
  CheckpointTensors weights;
  weights.tensors = next->NamedTensors();
  const void* param_before = engine->model()->model->norm->weight.data_ptr();
  ASSERT_TRUE(engine->LoadWeights(weights).ok());
  EXPECT_EQ(engine->model()->model->norm->weight.data_ptr(), param_before);
  ASSERT_TRUE(engine->RunUntilIdle().ok());
  auto fresh = engine->Generate({Greedy({4, 5, 6}, 5)});
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ((*fresh)[0].tokens, ReferenceGreedy(next, {4, 5, 6}, 5));
  weights.tensors.erase("model.norm.weight");
  EXPECT_FALSE(engine->LoadWeights(weights).ok());
}

TEST(EngineTest, ReleaseAndRecreateCache) {
  Transformer reference = TinyModel(27);
  auto engine = MakeEngine(TinyModel(27), 2);
  ASSERT_TRUE(engine->Submit(Greedy({1, 2}, 4)).ok());
  ASSERT_TRUE(engine->Step().ok());
  EXPECT_FALSE(engine->ReleaseCache().ok());  // a request is running
  ASSERT_TRUE(engine->RunUntilIdle().ok());
  ASSERT_TRUE(engine->ReleaseCache().ok());
  EXPECT_TRUE(engine->cache_released());
  ASSERT_TRUE(engine->Submit(Greedy({7, 8}, 4)).ok());
  EXPECT_EQ(engine->Step().code(), ErrorCode::kUnavailable);
  ASSERT_TRUE(engine->RecreateCache().ok());
  ASSERT_TRUE(engine->RunUntilIdle().ok());
  auto res = engine->Generate({Greedy({7, 8}, 4)});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].tokens, ReferenceGreedy(reference, {7, 8}, 4));
}

TEST(EngineTest, Bfloat16EngineRuns) {
  EngineOptions o;
  o.max_batch_size = 2;
  o.max_sequence_length = 32;
  o.dtype = torch::kBFloat16;
  auto engine = Engine::Create(TinyModel(28), o);
  ASSERT_TRUE(engine.ok());
  auto res = (*engine)->Generate({Greedy({1, 2, 3}, 4), Greedy({4}, 6)});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ((*res)[1].tokens.size(), 6u);
}

TEST(EngineTest, CancelWaitingAndRunning) {
  auto engine = MakeEngine(TinyModel(29), 1);
  std::vector<std::pair<RequestId, RequestResult>> done;
  auto record = [&](const RequestResult& r) { done.push_back({r.id, r}); };
  auto a = engine->Submit(Greedy({1, 2}, 10), record);
  auto b = engine->Submit(Greedy({3, 4}, 10), record);
  ASSERT_TRUE(engine->Step().ok());
  ASSERT_TRUE(engine->Step().ok());  // a has two tokens, b waits (one slot)
  EXPECT_TRUE(engine->Cancel(*b).ok());
  EXPECT_TRUE(engine->Cancel(*a).ok());
  EXPECT_EQ(engine->Cancel(*a).code(), ErrorCode::kNotFound);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].second.finish_reason, FinishReason::kCancelled);
  EXPECT_TRUE(done[0].second.tokens.empty());
  EXPECT_EQ(done[1].second.tokens.size(), 2u);
  EXPECT_TRUE(engine->idle());
  auto res = engine->Generate({Greedy({5}, 3)});  // the slot was freed
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[0].tokens.size(), 3u);
}

TEST(EngineTest, KvCacheBudgetCapsSlots) {
  EngineOptions o;
  o.max_batch_size = 8;
  o.max_sequence_length = 16;
  KvCacheOptions c = KvCacheOptions::ForModel(TinyConfig("llama", 4, 2, false), 1, 16,
                                              torch::kFloat32, torch::kCPU);
  o.kv_cache_budget_bytes = 3 * c.BytesPerSlot() + 1;
  auto engine = Engine::Create(TinyModel(30), o);
  ASSERT_TRUE(engine.ok());
  EXPECT_EQ((*engine)->max_running(), 3);
  o.kv_cache_budget_bytes = c.BytesPerSlot() - 1;
  EXPECT_FALSE(Engine::Create(TinyModel(30), o).ok());
}

}  // namespace
}  // namespace tlt::models
