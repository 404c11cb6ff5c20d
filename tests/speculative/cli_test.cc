// `tlt generate --drafter` and `tlt drafter init|record|train`, run end to end as a separate
// process on a tiny checkpoint.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "models/transformer.h"
#include "runtime/file_util.h"
#include "tests/cli_test_util.h"
#include "tests/models/test_models.h"

namespace tlt::speculative {
namespace {

using test_util::RunCli;

// The last line of the output (JSON; glog lines come before it on stderr).
nlohmann::json LastJson(const std::string& out) {
  std::string line, last;
  std::stringstream ss(out);
  while (std::getline(ss, line)) {
    if (!line.empty() && line[0] == '{') last = line;
  }
  return nlohmann::json::parse(last);
}

class DrafterCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = "/tmp/tlt-drafter-cli-" + std::to_string(::getpid());
    ASSERT_TRUE(RemoveTree(dir_).ok());
    target_ = dir_ + "/target";
    torch::manual_seed(3);
    models::ModelConfig c = models::testing::TinyConfig("qwen2", 4, 2, /*tied=*/true);
    c.eos_token_ids = {};  // every generation runs to --max-new-tokens
    models::Transformer model(c);
    models::testing::PerturbParameters(model, 4);
    ASSERT_TRUE(models::SaveTransformer(model, target_).ok());
    // Another shape: the drafter made for it must be refused.
    models::ModelConfig other = models::testing::TinyConfig("qwen2", 4, 2, true, 10000.0, 67);
    models::Transformer other_model(other);
    ASSERT_TRUE(models::SaveTransformer(other_model, dir_ + "/other").ok());
  }
  void TearDown() override { EXPECT_TRUE(RemoveTree(dir_).ok()); }

  nlohmann::json Generate(const std::string& extra) {
    int rc = 0;
    std::string out = RunCli("generate " + target_ +
                                 " --prompt-ids 5,6,7 --max-new-tokens 24 --temperature 0 "
                                 "--json --device cpu " +
                                 extra,
                             &rc);
    EXPECT_EQ(rc, 0) << out;
    return rc == 0 ? LastJson(out) : nlohmann::json();
  }

  std::string dir_, target_;
};

TEST_F(DrafterCliTest, InitRecordTrainGenerate) {
  int rc = 0;
  std::string out = RunCli("drafter init " + target_ + " --out " + dir_ + "/d0 --seed 3", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(std::ifstream(dir_ + "/d0/model.safetensors").good());

  const std::vector<int64_t> plain = Generate("")["samples"][0]["tokens"];
  ASSERT_EQ(plain.size(), 24u);
  auto fixed = Generate("--drafter " + dir_ + "/d0 --strategy 3_2_4");
  EXPECT_EQ(fixed["samples"][0]["tokens"].get<std::vector<int64_t>>(), plain);
  const auto& sd = fixed["stats"]["speculative"];
  EXPECT_GE(sd["mean_accept_length"].get<double>(), 1.0);
  EXPECT_EQ(sd["accepted_histogram"]["3_2_4"].size(), 5u);
  EXPECT_EQ(sd["sd_off_steps"].get<int64_t>(), 0);
  EXPECT_GE(sd["draft_seconds"].get<double>(), 0.0);
  auto adaptive = Generate("--drafter " + dir_ + "/d0 --adaptive --strategies 3_2_4,2_1_2 " +
                           "--sd-threshold 1 --sd-patience 3");
  EXPECT_EQ(adaptive["samples"][0]["tokens"].get<std::vector<int64_t>>(), plain);
  // Patience 3: two plain steps first; then the bandit's plain arm may decode plainly too (it
  // wins against an untrained drafter on a CPU).
  EXPECT_GE(adaptive["stats"]["speculative"]["sd_off_steps"].get<int64_t>(), 2);
  EXPECT_GT(adaptive["stats"]["speculative"]["sd_on_steps"].get<int64_t>(), 0);

  // Record greedy responses of a few prompts, train on them, measure again.
  {
    std::ofstream prompts(dir_ + "/prompts.jsonl");
    for (int i = 0; i < 6; ++i) {
      prompts << nlohmann::json{{"prompt_ids", {5 + i, 6 + 2 * i, 7}}}.dump() << "\n";
    }
  }
  out = RunCli("drafter record " + target_ + " --prompts " + dir_ + "/prompts.jsonl --out " + dir_ +
                   "/data.jsonl --max-new-tokens 32 --temperature 0 --device cpu",
               &rc);
  ASSERT_EQ(rc, 0) << out;
  std::ifstream data(dir_ + "/data.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(data, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["tokens"].size(), 35u);
    EXPECT_EQ(j["prompt_length"].get<int64_t>(), 3);
    ++lines;
  }
  EXPECT_EQ(lines, 6);
  out = RunCli("drafter train " + target_ + " --drafter " + dir_ + "/d0 --data " + dir_ +
                   "/data.jsonl --steps 80 --lr 3e-3 --batch-size 6 --out " + dir_ +
                   "/d1 --json --device cpu",
               &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("drafter train step 80"), std::string::npos) << out;  // glog progress
  auto trained = LastJson(out);
  EXPECT_LT(trained["last_loss"].get<double>(), trained["first_loss"].get<double>());
  EXPECT_TRUE(std::ifstream(dir_ + "/d1/optimizer.safetensors").good());
  auto after = Generate("--drafter " + dir_ + "/d1 --strategy 3_2_4");
  EXPECT_EQ(after["samples"][0]["tokens"].get<std::vector<int64_t>>(), plain);
  std::cerr << "accept length " << sd["mean_accept_length"] << " -> "
            << after["stats"]["speculative"]["mean_accept_length"] << "\n";
  EXPECT_GT(after["stats"]["speculative"]["mean_accept_length"].get<double>(),
            sd["mean_accept_length"].get<double>());
  // Training resumes from the optimizer state in --drafter.
  out = RunCli("drafter train " + target_ + " --drafter " + dir_ + "/d1 --data " + dir_ +
                   "/data.jsonl --steps 3 --json --device cpu",
               &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(LastJson(out)["optimizer_step"].get<int64_t>(), 83);
}

TEST_F(DrafterCliTest, BadInputGetsAClearError) {
  int rc = 0;
  ASSERT_EQ((RunCli("drafter init " + target_ + " --out " + dir_ + "/d0", &rc), rc), 0);
  ASSERT_EQ((RunCli("drafter init " + dir_ + "/other --out " + dir_ + "/dother", &rc), rc), 0);
  const std::string gen =
      "generate " + target_ + " --prompt-ids 5,6 --max-new-tokens 4 --device cpu ";
  struct Case {
    std::string args, message;
  } cases[] = {
      {gen + "--drafter " + dir_ + "/d0 --strategy 8_x_16", "top-k 'x' is not a positive integer"},
      {gen + "--drafter " + dir_ + "/d0 --strategy 1_2_9", "yield only 2 candidates"},
      {gen + "--drafter " + dir_ + "/d0 --strategy 4_4", "expected STEPS_TOPK_TOKENS"},
      {gen + "--drafter " + dir_ + "/dother", "vocab_size is 67 in the drafter but 61"},
      {gen + "--drafter " + dir_ + "/d0 --strategy 4_1_4 --adaptive", "exclude each other"},
      {gen + "--strategy 4_1_4", "need --drafter"},
      {gen + "--drafter " + dir_ + "/missing", "missing"},
      {"drafter train " + target_ + " --drafter " + dir_ + "/d0 --data " + dir_ + "/bad.jsonl",
       "bad.jsonl:2"},
      {"drafter init " + target_, "usage: tlt drafter init"},
  };
  {
    std::ofstream bad(dir_ + "/bad.jsonl");
    bad << R"({"tokens": [1, 2, 3], "prompt_length": 1})"
        << "\n"
        << R"({"tokens": [1, 2, 999], "prompt_length": 1})"
        << "\n";
  }
  for (const Case& c : cases) {
    std::string out = RunCli(c.args, &rc);
    EXPECT_NE(rc, 0) << c.args;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.args << "\n" << out;
  }
}

}  // namespace
}  // namespace tlt::speculative
