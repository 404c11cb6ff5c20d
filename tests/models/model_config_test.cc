#include "models/model_config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

namespace tlt::models {
namespace {

const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
  "max_position_embeddings": 512, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "bos_token_id": 1, "eos_token_id": [2, 3], "rope_scaling": null})";

TEST(ModelConfigTest, ParsesQwen2) {
  auto c = ParseModelConfig(kQwen2, "q.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_TRUE(c->attention_bias);
  EXPECT_FALSE(c->o_proj_bias);  // qwen2: q/k/v only
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_EQ(c->bos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2, 3}));
}

TEST(ModelConfigTest, LlamaDefaults) {
  auto c = ParseModelConfig(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
    "vocab_size": 100, "rms_norm_eps": 1e-5, "head_dim": 16})",
                            "l.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->o_proj_bias);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 16);  // explicit head_dim wins over hidden/heads
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(ModelConfigTest, NewerTransformersKeys) {
  auto c = ParseModelConfig(R"({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100, "rms_norm_eps": 1e-5,
    "dtype": "bfloat16", "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0},
    "use_sliding_window": false})",
                            "new.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_DOUBLE_EQ(c->rope_theta, 5000.0);
  auto yarn = ParseModelConfig(R"({"model_type": "llama", "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100,
    "rms_norm_eps": 1e-5, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})",
                               "y.json");
  ASSERT_FALSE(yarn.ok());
  EXPECT_NE(yarn.status().message().find("yarn"), std::string::npos);
}

TEST(ModelConfigTest, ErrorsNameKeyAndFile) {
  auto c = ParseModelConfig(R"({"model_type": "llama", "hidden_size": 32})", "dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("intermediate_size"), std::string::npos);
  EXPECT_NE(c.status().message().find("dir/config.json"), std::string::npos);
  auto g = ParseModelConfig(R"({"model_type": "gpt2"})", "g.json");
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("gpt2"), std::string::npos);
  auto bad = ParseModelConfig(R"({"model_type": "llama", "hidden_size": "x"})", "b.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("hidden_size"), std::string::npos);
  auto gqa = ParseModelConfig(R"({"model_type": "llama", "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
    "num_key_value_heads": 3, "vocab_size": 100, "rms_norm_eps": 1e-5})",
                              "gqa.json");
  EXPECT_FALSE(gqa.ok());
  EXPECT_FALSE(ParseModelConfig("not json", "x.json").ok());
  EXPECT_FALSE(ReadModelConfig("/nonexistent/config.json").ok());
}

TEST(ModelConfigTest, WriteReadRoundTrip) {
  auto c = ParseModelConfig(kQwen2, "q.json");
  ASSERT_TRUE(c.ok());
  const std::string path = std::filesystem::temp_directory_path() / "tlt_model_config_test.json";
  ASSERT_TRUE(WriteModelConfig(*c, path).ok());
  auto back = ReadModelConfig(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(ModelConfigToJson(*back), ModelConfigToJson(*c));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tlt::models
