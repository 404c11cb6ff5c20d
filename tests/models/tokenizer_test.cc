#include "models/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace tlt::models {
namespace {

TEST(CharTokenizerTest, RoundTripAndSpecials) {
  auto t = CharTokenizer::Create("0123456789+=é ", {"<pad>", "<eos>", "<bos>"});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->vocab_size(), 3 + 14);
  auto ids = (*t)->Encode("<bos>12+é=<eos>");
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(ids->front(), 2);
  EXPECT_EQ(ids->back(), 1);
  EXPECT_EQ(ids->size(), 7u);
  auto text = (*t)->Decode(*ids);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<bos>12+é=<eos>");
  EXPECT_EQ((*t)->TokenToId("é"), 3 + 12);
  EXPECT_FALSE((*t)->Encode("12x").ok());
  EXPECT_FALSE((*t)->Decode({99}).ok());
  EXPECT_FALSE(CharTokenizer::Create("aa", {}).ok());
}

class BpeTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = std::string(TLT_FIXTURES_DIR) + "/qwen3_tokenizer.json";
    if (!std::filesystem::exists(path)) return;
    auto t = BpeTokenizer::FromFile(path);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tokenizer_ = std::move(t).value().release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }
  void SetUp() override {
    if (tokenizer_ == nullptr) GTEST_SKIP() << "tests/models/fixtures/qwen3_tokenizer.json absent";
  }
  static BpeTokenizer* tokenizer_;
};
BpeTokenizer* BpeTokenizerTest::tokenizer_ = nullptr;

TEST_F(BpeTokenizerTest, MatchesReferenceEncodings) {
  std::ifstream in(std::string(TLT_FIXTURES_DIR) + "/qwen3_tokenizer_cases.json");
  ASSERT_TRUE(in) << "missing qwen3_tokenizer_cases.json";
  nlohmann::json cases = nlohmann::json::parse(in);
  ASSERT_GT(cases.size(), 10u);
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const std::vector<int64_t> want = c["ids"];
    auto got = tokenizer_->Encode(text);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, want) << "text: " << text;
    auto back = tokenizer_->Decode(want);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text);
  }
}

TEST_F(BpeTokenizerTest, PreTokenizerSplits) {
  using V = std::vector<std::string>;
  EXPECT_EQ(tokenizer_->PreTokenize("Hello, world!"), (V{"Hello", ",", " world", "!"}));
  EXPECT_EQ(tokenizer_->PreTokenize("a  b\n\n c"), (V{"a", " ", " b", "\n\n", " c"}));
  EXPECT_EQ(tokenizer_->PreTokenize("x123"), (V{"x", "1", "2", "3"}));
  EXPECT_EQ(tokenizer_->PreTokenize("it's"), (V{"it", "'s"}));
  EXPECT_EQ(tokenizer_->PreTokenize("end  "), (V{"end", "  "}));
  EXPECT_EQ(tokenizer_->PreTokenize(" ?!\n"), (V{" ?!\n"}));
}

TEST_F(BpeTokenizerTest, SpecialTokensAndErrors) {
  EXPECT_EQ(tokenizer_->TokenToId("<|im_start|>"), 151644);
  EXPECT_EQ(tokenizer_->TokenToId("<|endoftext|>"), 151643);
  auto ids = tokenizer_->Encode("<|im_start|>user<|im_end|>");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 151644);
  EXPECT_EQ(ids->back(), 151645);
  EXPECT_GE(tokenizer_->vocab_size(), 151669);
  EXPECT_FALSE(tokenizer_->Decode({-1}).ok());
  // Arbitrary bytes (invalid UTF-8) survive a round trip.
  const std::string bytes("\xff\xfe\x80 ok", 6);
  auto enc = tokenizer_->Encode(bytes);
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(tokenizer_->Decode(*enc).value(), bytes);
  EXPECT_FALSE(BpeTokenizer::FromJson(R"({"model": {"type": "Unigram"}})", "x.json").ok());
  EXPECT_FALSE(BpeTokenizer::FromFile("/nonexistent/tokenizer.json").ok());
}

}  // namespace
}  // namespace tlt::models
