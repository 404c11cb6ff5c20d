// Checks the models/ layer against files produced by Hugging Face transformers
// (scripts/hf/make_fixtures.py, run on the GPU machine; output in tests/models/fixtures/hf/).
// Skips when the fixtures are absent.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/engine.h"
#include "models/safetensors.h"
#include "models/tokenizer.h"
#include "models/transformer.h"

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

TEST(HfFixtureTest, LogitsAndGreedyTokensMatchTransformers) {
  const auto dirs = Checkpoints();
  if (dirs.empty()) {
    GTEST_SKIP() << "no HF fixtures in " << HfDir()
                 << "; run scripts/hf/make_fixtures.py on a machine with transformers";
  }
  for (const fs::path& dir : dirs) {
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
