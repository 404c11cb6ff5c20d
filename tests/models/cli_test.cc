// The `tlt` model commands, run as a separate process, against the transformers fixtures.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "models/safetensors.h"
#include "tests/cli_test_util.h"

namespace tlt::models {
namespace {

using test_util::RunCli;

const std::string kDir = std::string(TLT_FIXTURES_DIR) + "/hf/llama_gqa_untied";

TEST(CliTest, ModelLogitsMatchTransformers) {
  std::ifstream ref(kDir + "/reference.json");
  if (!ref) GTEST_SKIP() << "no HF fixtures (scripts/hf/make_fixtures.py makes them)";
  auto reference = nlohmann::json::parse(ref);
  std::vector<int64_t> ids = reference["inputs"][0];
  std::string list;
  for (auto id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  int rc = 0;
  std::string out = RunCli("model logits " + kDir + " --ids " + list + " --json --device cpu", &rc);
  ASSERT_EQ(rc, 0) << out;
  auto got = nlohmann::json::parse(out)["logits"];
  auto file = SafetensorsFile::Open(kDir + "/logits.safetensors");
  ASSERT_TRUE(file.ok());
  torch::Tensor want = (*file)->Get("logits.0").value();
  ASSERT_EQ(int64_t(got.size()), want.size(0));
  // Relative to the largest reference logit, as in hf_fixture_test.cc.
  double worst = 0, scale = want.abs().max().item<double>();
  for (int64_t t = 0; t < want.size(0); ++t)
    for (int64_t v = 0; v < want.size(1); ++v)
      worst = std::max(worst, std::abs(got[t][v].get<double>() - want[t][v].item<double>()));
  EXPECT_LT(worst / scale, 1e-4);
}

TEST(CliTest, GreedyGenerateMatchesTransformers) {
  std::ifstream ref(kDir + "/reference.json");
  if (!ref) GTEST_SKIP() << "no HF fixtures";
  auto reference = nlohmann::json::parse(ref);
  std::vector<int64_t> ids = reference["inputs"][1];
  std::vector<int64_t> greedy = reference["greedy"][1];
  std::string list;
  for (auto id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  int rc = 0;
  std::string out = RunCli("generate " + kDir + " --prompt-ids " + list + " --max-new-tokens " +
                               std::to_string(greedy.size()) + " --temperature 0 --json --device cpu",
                           &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  std::vector<int64_t> tokens = j["samples"][0]["tokens"];
  // The engine stops at an EOS token; compare up to what it produced.
  ASSERT_FALSE(tokens.empty());
  EXPECT_EQ(tokens, std::vector<int64_t>(greedy.begin(), greedy.begin() + tokens.size()));
  EXPECT_GT(j["stats"]["tokens_per_s"].get<double>(), 0);
}

TEST(CliTest, BadInputGetsAClearError) {
  int rc = 0;
  std::string out = RunCli("model logits " + kDir + " --ids 1,x,3", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("'x' is not a token id"), std::string::npos) << out;
  out = RunCli("model logits " + kDir + " --ids 1,99999", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("outside the vocabulary"), std::string::npos) << out;
  out = RunCli("model info /nonexistent-dir", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("/nonexistent-dir"), std::string::npos) << out;
  out = RunCli("generate " + kDir + " --prompt-ids 1 --max-new-tokens 2 --tempreature 1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("unknown flag --tempreature"), std::string::npos) << out;
}

}  // namespace
}  // namespace tlt::models
