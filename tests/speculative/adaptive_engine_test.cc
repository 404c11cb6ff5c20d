// SpeculativeEngine with continuous batching, SD switched per step and the strategy bandit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>

#include "models/engine.h"
#include "spec_test_util.h"
#include "speculative/speculative_engine.h"

namespace tlt::speculative {
namespace {

models::Transformer Fixture() {
  auto m = models::LoadTransformer(std::string(TLT_FIXTURES_DIR) + "/hf/llama_gqa_untied",
                                   torch::kFloat32);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.value();
}

torch::Device TestDevice() {
  const char* d = std::getenv("TLT_TEST_DEVICE");
  return d != nullptr && std::string(d) == "cuda" && torch::cuda::is_available() ? torch::kCUDA
                                                                                 : torch::kCPU;
}

models::Request Greedy(std::vector<int64_t> prompt, int64_t max_new_tokens) {
  models::Request r;
  r.prompt = std::move(prompt);
  r.max_new_tokens = max_new_tokens;
  r.temperature = 0.0;
  return r;
}

std::vector<int64_t> PlainGreedy(models::Transformer target, const models::Request& request) {
  models::EngineOptions options;
  options.device = TestDevice();
  auto engine = models::Engine::Create(target, options);
  EXPECT_TRUE(engine.ok());
  auto out = (*engine)->Generate({request});
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? (*out)[0].tokens : std::vector<int64_t>{};
}

SpeculativeEngineOptions AdaptiveOptions() {
  SpeculativeEngineOptions o;
  o.adaptive = true;
  o.adaptive_strategies = {ParseStrategy("4_2_6").value(), ParseStrategy("3_1_3").value(),
                           ParseStrategy("2_2_3").value()};
  o.bandit.bucket_edges = {1, 2, 4};
  o.bandit.plain_arm = false;  // every SD-allowed step speculates (PlainArm* turns it on)
  o.sd_batch_threshold = 2;
  o.sd_patience = 2;
  o.max_pending_pairs = 3;  // exercises the catch-up of long pending runs while SD is off
  o.max_batch_size = 6;
  o.device = TestDevice();
  o.fused_plain_decode = true;  // CUDA: SD-off steps through models::CudaDecoder
  return o;
}

// Requests join while others run and SD turns off and on again mid-request; every request's
// greedy output equals plain greedy decoding.
TEST(AdaptiveEngineTest, GreedyEqualsPlainWhileSwitching) {
  models::Transformer target = Fixture();
  auto engine = SpeculativeEngine::Create(target, InitDrafter(target, 5), AdaptiveOptions());
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  SpeculativeEngine& e = **engine;
  std::vector<models::Request> requests;
  std::map<models::RequestId, models::RequestResult> results;
  auto record = [&](const models::RequestResult& r) { results[r.id] = r; };
  std::map<models::RequestId, size_t> index;
  auto submit = [&](models::Request r) {
    requests.push_back(r);
    auto id = e.Submit(r, record);
    ASSERT_TRUE(id.ok());
    index[*id] = requests.size() - 1;
  };
  submit(Greedy({5, 17, 99, 3}, 60));
  submit(Greedy({200, 7}, 45));
  std::vector<bool> modes;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(e.Step().ok());
    modes.push_back(e.speculating());
  }
  // Four more join: the batch goes above the threshold (SD off), then requests finish (SD on).
  submit(Greedy({1, 2, 3, 4, 5, 6, 7, 8, 9}, 12));
  submit(Greedy({42}, 18));
  submit(Greedy({9, 9, 9, 9}, 25));
  submit(Greedy({100, 101, 102}, 30));
  while (!e.idle()) {
    ASSERT_TRUE(e.Step().ok());
    modes.push_back(e.speculating());
  }
  ASSERT_EQ(results.size(), requests.size());
  for (const auto& [id, result] : results) {
    const models::Request& r = requests[index.at(id)];
    EXPECT_EQ(result.tokens, PlainGreedy(target, r)) << "request " << id;
    EXPECT_EQ(result.tokens.size(), result.logprobs.size());
  }
  // off (patience) -> on -> off (batch 6) -> on.
  std::vector<bool> changes{modes[0]};
  for (bool m : modes) {
    if (m != changes.back()) changes.push_back(m);
  }
  EXPECT_EQ(changes, (std::vector<bool>{false, true, false, true}));
  const SpeculativeStats& s = e.stats();
  EXPECT_GT(s.sd_on_steps, 0);
  EXPECT_GT(s.sd_off_steps, 0);
  int64_t total = 0, histogram_steps = 0;
  for (const auto& [id, result] : results) total += result.tokens.size();
  EXPECT_EQ(s.generated_tokens, total);
  for (const auto& [name, histogram] : s.accepted_histogram) {
    EXPECT_TRUE(name == "4_2_6" || name == "3_1_3" || name == "2_2_3") << name;
    for (int64_t c : histogram) histogram_steps += c;
  }
  EXPECT_EQ(histogram_steps, s.steps);
  EXPECT_GT(s.draft_seconds, 0);
  EXPECT_GT(s.verify_seconds, 0);
}

// With the plain arm, the bandit also decodes plainly while SD is allowed: outputs stay the plain
// greedy ones and the plain steps are counted as SD-off steps.
// SD turns on after 80 plain steps with every pair still pending (no early feeding): the
// catch-up feeds the 80+ pairs in pieces of kCatchUpPiece. Fed so, the drafter is in the same
// state as one fed every 3 steps: the first SD step proposes the same tree (the drafter's
// weights are scaled up so that its attention over the cache matters: a piece written at
// wrong positions changes the tree). Outputs equal plain greedy decoding.
TEST(AdaptiveEngineTest, LongPendingRunsAreFedInPieces) {
  const models::Request request = Greedy({5, 17, 99, 3}, 110);
  std::vector<DraftTree> first_trees;
  for (int64_t max_pending : {1000, 3}) {
    SCOPED_TRACE("max_pending_pairs " + std::to_string(max_pending));
    // A fresh target each run: the engine moves its target to the test device, and a drafter
    // initialized and perturbed on another device would draw other random weights.
    models::Transformer target = Fixture();
    SpeculativeEngineOptions o;
    o.strategy = ParseStrategy("3_4_8").value();
    o.sd_batch_threshold = 1;
    o.sd_patience = 80;
    o.max_pending_pairs = max_pending;
    o.device = TestDevice();
    std::vector<DraftTree> first;  // the first SD step's tree
    o.draft_observer = [&first](const std::vector<DraftTree>& trees) {
      if (first.empty()) first = trees;
    };
    // Weights large enough that the drafter's attention over its cache moves its logits.
    Drafter drafter = InitDrafter(target, 5);
    {
      torch::NoGradGuard no_grad;
      torch::manual_seed(3);
      for (torch::Tensor& p : drafter->parameters()) p.add_(torch::randn_like(p) * 0.3);
    }
    auto engine = SpeculativeEngine::Create(target, drafter, o);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    auto out = (*engine)->Generate({request});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ((*out)[0].tokens, PlainGreedy(target, request));
    EXPECT_GE((*engine)->stats().sd_off_steps, 79);  // the patience, give or take the switch step
    EXPECT_LE((*engine)->stats().sd_off_steps, 81);
    EXPECT_GT((*engine)->stats().sd_on_steps, 0);
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0].num_draft_tokens(), 8);
    first_trees.push_back(first[0]);
  }
  EXPECT_EQ(first_trees[0].tokens, first_trees[1].tokens);
  EXPECT_EQ(first_trees[0].parents, first_trees[1].parents);
}

TEST(AdaptiveEngineTest, PlainArmKeepsGreedyOutput) {
  models::Transformer target = Fixture();
  SpeculativeEngineOptions o = AdaptiveOptions();
  o.bandit.plain_arm = true;
  o.sd_batch_threshold = 8;  // SD always allowed (after the patience)
  auto engine = SpeculativeEngine::Create(target, InitDrafter(target, 5), o);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const std::vector<models::Request> requests = {Greedy({5, 17, 99, 3}, 40), Greedy({200, 7}, 30)};
  auto got = (*engine)->Generate(requests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ((*got)[i].tokens, PlainGreedy(target, requests[i])) << "request " << i;
  }
  const SpeculativeStats& s = (*engine)->stats();
  const StrategyBandit* bandit = (*engine)->bandit();
  ASSERT_NE(bandit, nullptr);
  // Every bucket's arms were tried, the plain one included: more plain steps than the patience.
  EXPECT_GT(s.sd_off_steps, o.sd_patience);
  EXPECT_GT(s.sd_on_steps, 0);
  EXPECT_GT(bandit->MedianReward(2, bandit->plain_arm_index()), 0.0);
}

// Sampling with SD switching on and off between steps keeps the plain distribution of the first
// and second tokens (T 0.8, top-k 6); the oracle drafter makes many drafts accepted.
TEST(AdaptiveEngineTest, SampledTokensKeepThePlainDistribution) {
  models::Transformer target = Fixture();
  const models::SamplingParams params{0.8, 6, 1.0};
  const std::vector<int64_t> prompt = {5, 17, 99, 3};
  torch::NoGradGuard g;
  auto processed = [&](const std::vector<int64_t>& ctx) {
    return testing::Processed(
        target->forward(torch::tensor(ctx).unsqueeze(0))[0].narrow(0, ctx.size() - 1, 1), params);
  };
  const int64_t V = target->config().vocab_size;
  std::vector<double> p1 = testing::RowOf(processed(prompt), 0), p2(V, 0.0);
  for (int64_t a = 0; a < V; ++a) {
    if (p1[a] == 0) continue;
    std::vector<int64_t> ctx = prompt;
    ctx.push_back(a);
    std::vector<double> row = testing::RowOf(processed(ctx), 0);
    for (int64_t b = 0; b < V; ++b) p2[b] += p1[a] * row[b];
  }
  SpeculativeEngineOptions options = AdaptiveOptions();
  options.adaptive_strategies = {ParseStrategy("2_2_3").value(), ParseStrategy("3_1_3").value()};
  options.max_batch_size = 8;
  options.sd_batch_threshold = 5;
  options.sd_patience = 0;
  options.device = torch::kCPU;
  options.draft_oracle = [target](const std::vector<int64_t>& context) mutable {
    torch::NoGradGuard g;
    return torch::log_softmax(target->forward(torch::tensor(context).unsqueeze(0))[0][-1], -1);
  };
  auto engine = SpeculativeEngine::Create(target, InitDrafter(target, 1), options);
  ASSERT_TRUE(engine.ok());
  std::vector<models::Request> requests;
  for (int i = 0; i < 4000; ++i) {
    models::Request r;
    r.prompt = prompt;
    r.max_new_tokens = i % 3 == 0 ? 4 : 2;  // uneven lengths: the decode batch size varies
    r.temperature = params.temperature;
    r.top_k = params.top_k;
    r.seed = 5000 + i;
    requests.push_back(r);
  }
  auto got = (*engine)->Generate(requests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  std::vector<int64_t> first(V), second(V);
  for (const auto& r : *got) {
    ASSERT_GE(r.tokens.size(), 2u);
    first[r.tokens[0]]++;
    second[r.tokens[1]]++;
  }
  testing::ExpectDistribution(first, p1, "first token");
  testing::ExpectDistribution(second, p2, "second token", 0.05);
  const SpeculativeStats& s = (*engine)->stats();
  std::cerr << "SD on " << s.sd_on_steps << " off " << s.sd_off_steps << " steps, accept length "
            << s.mean_accept_length() << "\n";
  EXPECT_GT(s.sd_on_steps, 50);
  EXPECT_GT(s.sd_off_steps, 50);
  EXPECT_GT(s.accepted_tokens, 0);
}

TEST(AdaptiveEngineTest, SwapsDrafterWeightsCancelsAndReportsErrors) {
  models::Transformer target = Fixture();
  SpeculativeEngineOptions options = AdaptiveOptions();
  options.sd_batch_threshold = 8;
  options.sd_patience = 0;
  auto engine = SpeculativeEngine::Create(target, InitDrafter(target, 5), options);
  ASSERT_TRUE(engine.ok());
  SpeculativeEngine& e = **engine;
  std::vector<models::RequestResult> finished;
  auto keep = [&](const models::RequestResult& r) { finished.push_back(r); };
  models::Request a = Greedy({5, 17, 99, 3}, 30), b = Greedy({200, 7}, 30);
  auto ida = e.Submit(a, keep), idb = e.Submit(b, keep);
  ASSERT_TRUE(ida.ok() && idb.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e.Step().ok());
  // Swap in another drafter's weights between steps.
  Drafter other = InitDrafter(target, 9);
  models::CheckpointTensors tensors;
  for (const auto& [name, t] : other->NamedTensors()) tensors.tensors[name] = t.clone();
  ASSERT_TRUE(e.LoadDrafterWeights(tensors).ok());
  for (const auto& [name, t] : e.drafter()->NamedTensors()) {
    EXPECT_TRUE(torch::equal(t.cpu(), tensors.tensors.at(name).cpu())) << name;
  }
  models::CheckpointTensors broken = tensors;
  broken.tensors.erase("fc.weight");
  EXPECT_FALSE(e.LoadDrafterWeights(broken).ok());
  ASSERT_TRUE(e.Cancel(*idb).ok());
  EXPECT_EQ(e.Cancel(*idb).code(), ErrorCode::kNotFound);
  ASSERT_TRUE(e.RunUntilIdle().ok());
  ASSERT_EQ(finished.size(), 2u);
  EXPECT_EQ(finished[0].finish_reason, models::FinishReason::kCancelled);
  EXPECT_EQ(finished[1].tokens, PlainGreedy(target, a));
  // Bad requests and options get clear errors.
  EXPECT_EQ(e.Submit(Greedy({}, 3)).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(e.Submit(Greedy({1, 99999}, 3)).status().message().find("out of vocabulary"),
            std::string::npos);
  SpeculativeEngineOptions bad = options;
  bad.sample_drafts = true;  // 4_2_6 is a tree
  auto refused = SpeculativeEngine::Create(target, InitDrafter(target, 5), bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("4_2_6"), std::string::npos);
}

}  // namespace
}  // namespace tlt::speculative
