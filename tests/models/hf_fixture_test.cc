// Checks the models/ layer against files produced by Hugging Face transformers
// (scripts/hf/make_fixtures.py, run on the GPU machine; output in tests/models/fixtures/hf/).
// Skips when the fixtures are absent.
#include "runtime/file_util.h"
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/engine.h"
#include "models/safetensors.h"
#include "models/tokenizer.h"
#include "models/transformer.h"
#include "tests/models/test_models.h"

namespace tlt::models {
namespace {

namespace fs = std::filesystem;

fs::path HfDir() { return fs::path(TLT_FIXTURES_DIR) / "hf"; }

std::vector<fs::path> Checkpoints() {
  std::vector<fs::path> out;
  if (!fs::exists(HfDir())) return out;
  for (const auto& e : fs::directory_iterator(HfDir())) {
    if (e.is_directory() && fs::exists(e.path() / "config.json")) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Checks one fixture directory: float32 logits of each input within 1e-4 relative error of the
// reference, and identical greedy continuations from the engine.
void CheckAgainstReference(const fs::path& dir) {
  SCOPED_TRACE(dir.string());
  auto model = LoadTransformer(dir.string(), torch::kFloat32);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::ifstream in(dir / "reference.json");
  ASSERT_TRUE(in) << "missing reference.json";
  const nlohmann::json ref = nlohmann::json::parse(in);
  auto logits_file = SafetensorsFile::Open((dir / "logits.safetensors").string());
  ASSERT_TRUE(logits_file.ok()) << logits_file.status().ToString();
  const auto& inputs = ref["inputs"];
  torch::NoGradGuard no_grad;
  std::vector<Request> requests;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int64_t> ids = inputs[i];
    torch::Tensor want = (*logits_file)->Get("logits." + std::to_string(i)).value();
    torch::Tensor got = (*model)->forward(torch::tensor(ids, torch::kInt64).unsqueeze(0))[0];
    ASSERT_EQ(got.sizes(), want.sizes());
    const double rel =
        ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item<double>();
    EXPECT_LT(rel, 1e-4) << "input " << i;
    Request r;
    r.prompt = ids;
    r.max_new_tokens = ref["max_new_tokens"];
    r.temperature = 0;
    requests.push_back(r);
  }
  EngineOptions options;
  options.max_batch_size = 2;  // fewer slots than requests: exercises continuous batching
  options.max_sequence_length = 64;
  auto engine = Engine::Create(*model, options);
  ASSERT_TRUE(engine.ok());
  auto results = (*engine)->Generate(requests);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::vector<int64_t> want = ref["greedy"][i];
    EXPECT_EQ((*results)[i].tokens, want) << "greedy continuation of input " << i;
  }
}

TEST(HfFixtureTest, LogitsAndGreedyTokensMatchTransformers) {
  const auto dirs = Checkpoints();
  if (dirs.empty()) {
    GTEST_SKIP() << "no HF fixtures in " << HfDir()
                 << "; run scripts/hf/make_fixtures.py on a machine with transformers";
  }
  for (const fs::path& dir : dirs) CheckAgainstReference(dir);
}

// The checker itself, on a fixture in the same layout made here from the float64 reference.
TEST(HfFixtureTest, CheckerAcceptsFloat64ReferenceFixture) {
  const fs::path dir = fs::temp_directory_path() / ("tlt_hf_self_" + std::to_string(::getpid()));
  (void)::tlt::RemoveTree(std::string(dir));
  torch::manual_seed(30);
  Transformer model(testing::TinyConfig("qwen2", 4, 2, true, 1e6));
  testing::PerturbParameters(model, 31);
  ASSERT_TRUE(SaveTransformer(model, dir.string()).ok());
  const std::vector<std::vector<int64_t>> inputs = {{1, 17, 42, 9, 3}, {2, 9}};
  nlohmann::json ref = {
      {"inputs", inputs}, {"max_new_tokens", 6}, {"greedy", nlohmann::json::array()}};
  TensorMap logits;
  for (size_t i = 0; i < inputs.size(); ++i) {
    logits["logits." + std::to_string(i)] =
        testing::ReferenceLogits(model, torch::tensor(inputs[i], torch::kInt64))
            .to(torch::kFloat32);
    std::vector<int64_t> ids = inputs[i], greedy;
    for (int step = 0; step < 6; ++step) {
      greedy.push_back(testing::ReferenceLogits(model, torch::tensor(ids, torch::kInt64))[-1]
                           .argmax()
                           .item<int64_t>());
      ids.push_back(greedy.back());
    }
    ref["greedy"].push_back(greedy);
  }
  ASSERT_TRUE(WriteSafetensors((dir / "logits.safetensors").string(), logits).ok());
  std::ofstream(dir / "reference.json") << ref.dump();
  CheckAgainstReference(dir);
  (void)::tlt::RemoveTree(std::string(dir));
}

TEST(HfFixtureTest, TokenizerMatchesHfTokenizers) {
  const fs::path cases_path = HfDir() / "tokenizer_cases.json";
  const fs::path tok_path = fs::path(TLT_FIXTURES_DIR) / "qwen3_tokenizer.json";
  if (!fs::exists(cases_path) || !fs::exists(tok_path)) {
    GTEST_SKIP() << "no " << cases_path << "; run scripts/hf/make_fixtures.py";
  }
  auto tok = BpeTokenizer::FromFile(tok_path.string());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  std::ifstream in(cases_path);
  for (const auto& c : nlohmann::json::parse(in)) {
    const std::string text = c["text"];
    const std::vector<int64_t> want = c["ids"];
    auto got = (*tok)->Encode(text);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, want) << text;
  }
}

}  // namespace
}  // namespace tlt::models
