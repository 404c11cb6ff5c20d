// Datasets, prompt templates, the data cursor, the character vocabulary and reward functions.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>

#include "rl/char_vocab.h"
#include "rl/dataset.h"
#include "rl/reward.h"

namespace tlt::rl {
namespace {

TEST(JsonlTest, ParsesFieldsAndNamesBrokenLines) {
  auto ok = ParseJsonl(
      "{\"prompt\": \"1+1\", \"answer\": 2, \"level\": \"easy\", \"id\": 7}\n\n"
      "{\"prompt\": \"x\", \"answer\": \"3/4\"}\n",
      "a.jsonl");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].answer, "2");
  EXPECT_EQ((*ok)[0].fields.at("level"), "easy");
  EXPECT_EQ((*ok)[0].fields.at("id"), "7");
  EXPECT_EQ((*ok)[1].source, "a.jsonl:3");

  auto bad = ParseJsonl("{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": \"a\"\n", "d.jsonl");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("d.jsonl:2"), std::string::npos) << bad.status().message();
  auto missing = ParseJsonl("{\"answer\": \"b\"}", "m.jsonl");
  EXPECT_NE(missing.status().message().find("m.jsonl:1: missing \"prompt\""), std::string::npos);
  auto not_object = ParseJsonl("[1,2]", "n.jsonl");
  EXPECT_NE(not_object.status().message().find("n.jsonl:1"), std::string::npos);
}

TEST(JsonlTest, FileRoundTripAndMissingFile) {
  std::string path = ::testing::TempDir() + "/rl_data_test.jsonl";
  std::vector<Example> in(2);
  in[0].prompt = "p0\nwith newline";
  in[0].answer = "a0";
  in[0].fields["k"] = "v";
  in[1].prompt = "p1";
  in[1].answer = "a1";
  ASSERT_TRUE(WriteJsonl(path, in).ok());
  auto out = ReadJsonl(path);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].prompt, in[0].prompt);
  EXPECT_EQ((*out)[0].fields.at("k"), "v");
  EXPECT_EQ((*out)[1].source, path + ":2");
  EXPECT_EQ(ReadJsonl(path + ".nope").status().code(), ErrorCode::kNotFound);
  std::remove(path.c_str());
}

TEST(PromptTemplateTest, SubstitutesFieldsAndEscapes) {
  Example e;
  e.prompt = "2+2";
  e.answer = "4";
  e.fields["level"] = "easy";
  auto r = PromptTemplate("Q ({level}): {prompt} {{boxed}}").Apply(e);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "Q (easy): 2+2 {boxed}");
  EXPECT_FALSE(PromptTemplate("{nope}").Apply(e).ok());
  EXPECT_FALSE(PromptTemplate("{prompt").Apply(e).ok());
}

TEST(DataCursorTest, EpochsArePermutationsAndStateRestores) {
  DataCursor c(10, 42);
  std::vector<int64_t> first = c.Next(10);
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()).size(), 10u);
  std::vector<int64_t> a = c.Next(7);
  DataCursor::State saved = c.state();
  std::vector<int64_t> b = c.Next(8);  // crosses into epoch 2
  DataCursor d(10, 0);
  ASSERT_TRUE(d.Restore(saved).ok());
  EXPECT_EQ(d.Next(8), b);
  EXPECT_NE(first, a);  // a different permutation per epoch (almost surely)
  DataCursor::State bad = saved;
  bad.position = 11;
  EXPECT_FALSE(d.Restore(bad).ok());
}

TEST(CharVocabTest, EncodeDecode) {
  auto v = CharVocab::Create("ab+");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->vocab_size(), 5);
  EXPECT_EQ(v->eos_id(), 1);
  auto ids = v->Encode("a+b");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int64_t>{2, 4, 3}));
  EXPECT_EQ(*v->Decode({2, 4, 3, 1}), "a+b<eos>");
  EXPECT_NE(v->Encode("a c").status().message().find("offset 1"), std::string::npos);
  EXPECT_FALSE(v->Decode({9}).ok());
  EXPECT_FALSE(CharVocab::Create("aa").ok());
}

TEST(RewardTest, ExtractsFinalAnswers) {
  EXPECT_EQ(*ExtractFinalAnswer("so \\boxed{\\frac{1}{2}} and \\boxed{7}"), "7");
  EXPECT_EQ(*ExtractFinalAnswer("x \\boxed{a{b}c} y"), "a{b}c");
  EXPECT_EQ(*ExtractFinalAnswer("work 3+4=7;####7"), "7");
  EXPECT_EQ(*ExtractFinalAnswer("#### 1,234.\nmore"), "1,234");
  EXPECT_EQ(*ExtractFinalAnswer("we get 12 then -3.5 apples."), "-3.5");
  EXPECT_EQ(*ExtractFinalAnswer("ratio 3/4"), "3/4");
  EXPECT_FALSE(ExtractFinalAnswer("no numbers here").has_value());
}

TEST(RewardTest, ComparesNumbersByValue) {
  EXPECT_TRUE(AnswersMatch("0.5", "1/2"));
  EXPECT_TRUE(AnswersMatch("\\frac{1}{2}", "0.50"));
  EXPECT_TRUE(AnswersMatch("1,000", "1000"));
  EXPECT_TRUE(AnswersMatch("-6/4", "-1.5"));
  EXPECT_TRUE(AnswersMatch("$42$", "42"));
  EXPECT_FALSE(AnswersMatch("0.333", "1/3"));
  EXPECT_FALSE(AnswersMatch("12", "21"));
  EXPECT_TRUE(AnswersMatch("x+1", " x+1 "));  // strings: trimmed equality
  EXPECT_FALSE(ParseNumber("1/0").has_value());
  EXPECT_FALSE(ParseNumber("1.2.3").has_value());
  EXPECT_EQ(*ParseNumber("7."), (Rational{7, 1}));  // a sentence-ending period
  Rational r = *ParseNumber("-12.250");
  EXPECT_EQ(r.num, -49);
  EXPECT_EQ(r.den, 4);
}

TEST(RewardTest, RegistryBuiltinsAndUserFunctions) {
  RewardRegistry reg;
  Example e;
  e.answer = "57";
  auto math = reg.Get("math");
  ASSERT_TRUE(math.ok());
  EXPECT_EQ((*math)("12+45=57;####57", e), 1.0);
  EXPECT_EQ((*math)("12+45=56;####56", e), 0.0);
  EXPECT_EQ((*reg.Get("format"))("no marker 57", e), 0.0);
  EXPECT_EQ((*reg.Get("format"))("\\boxed{3}", e), 1.0);
  EXPECT_DOUBLE_EQ((*reg.Get("math_and_format"))("####57", e), 1.1);
  ASSERT_TRUE(
      reg.Register("length", [](const std::string& r, const Example&) { return -0.01 * r.size(); })
          .ok());
  EXPECT_DOUBLE_EQ((*reg.Get("length"))("abcd", e), -0.04);
  EXPECT_FALSE(reg.Register("math", MathReward).ok());
  auto missing = reg.Get("nope");
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.status().message().find("length"), std::string::npos);
}

}  // namespace
}  // namespace tlt::rl
