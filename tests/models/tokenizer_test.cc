#include "models/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/unicode.h"

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

// A minimal byte-level tokenizer.json: the 256 byte tokens, "ab", "abc", merges a+b, ab+c
// ... and the Llama-3 split pattern.
std::string TinyTokenizerJson(bool ignore_merges, bool drop_abc_merge, bool nfc = false) {
  nlohmann::json vocab = nlohmann::json::object();
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = direct[b] ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    vocab[s] = b;
  }
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  nlohmann::json merges = nlohmann::json::array({nlohmann::json::array({"a", "b"})});
  if (!drop_abc_merge) merges.push_back(nlohmann::json::array({"ab", "c"}));
  nlohmann::json j = {
      {"normalizer", nfc ? nlohmann::json({{"type", "NFC"}}) : nlohmann::json()},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex",
              R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", ignore_merges}}},
      {"added_tokens", {{{"id", 258}, {"content", "<|eot|>"}, {"special", true}}}}};
  return j.dump();
}

TEST(BpeTinyTest, Llama3PatternDigitsAndIgnoreMerges) {
  auto plain = BpeTokenizer::FromJson(TinyTokenizerJson(false, true), "tiny.json");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  // Digits in groups of up to three.
  EXPECT_EQ((*plain)->PreTokenize("12345"), (std::vector<std::string>{"123", "45"}));
  // Without the ab+c merge "abc" is ab, c; with ignore_merges the whole word is one token.
  EXPECT_EQ((*plain)->Encode("abc").value(), (std::vector<int64_t>{256, 'c'}));
  auto ignore = BpeTokenizer::FromJson(TinyTokenizerJson(true, true), "tiny.json");
  ASSERT_TRUE(ignore.ok());
  EXPECT_EQ((*ignore)->Encode("abc").value(), (std::vector<int64_t>{257}));
  EXPECT_EQ((*ignore)->Encode("abc<|eot|>ab").value(), (std::vector<int64_t>{257, 258, 256}));
  EXPECT_EQ((*ignore)->Decode({257, 258, 256}).value(), "abc<|eot|>ab");
  auto merged = BpeTokenizer::FromJson(TinyTokenizerJson(false, false), "tiny.json");
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ((*merged)->Encode(" abc").value(), (std::vector<int64_t>{' ', 257}));
}

std::string Utf8(const std::vector<char32_t>& cps) {
  std::string out;
  for (char32_t cp : cps) AppendUtf8(cp, &out);
  return out;
}

// NfcNormalize against Python's unicodedata on 1024 strings: a sample of the Unicode 15.0
// NormalizationTest.txt columns (decomposed, precomposed, Hangul, reordered marks, composition
// exclusions) and random combining sequences (tests/models/fixtures/nfc_cases.txt, made by
// scripts/hf/gen_nfc_tables.py --cases).
TEST(NfcTest, MatchesPythonUnicodedata) {
  std::ifstream in(std::string(TLT_FIXTURES_DIR) + "/nfc_cases.txt");
  ASSERT_TRUE(in.good()) << "tests/models/fixtures/nfc_cases.txt missing";
  auto parse = [](const std::string& field) {
    std::vector<char32_t> cps;
    std::istringstream words(field);
    for (std::string w; words >> w;) cps.push_back(static_cast<char32_t>(std::stoul(w, nullptr, 16)));
    return cps;
  };
  int checked = 0, wrong = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t semi = line.find(';');
    ASSERT_NE(semi, std::string::npos) << line;
    const std::string input = Utf8(parse(line.substr(0, semi)));
    const std::string want = Utf8(parse(line.substr(semi + 1)));
    ++checked;
    if (NfcNormalize(input) != want && ++wrong <= 5) ADD_FAILURE() << "NFC of " << line;
    EXPECT_EQ(NfcNormalize(want), want) << "NFC is not idempotent on " << line;
  }
  EXPECT_EQ(checked, 1024);
  EXPECT_EQ(wrong, 0);
}

TEST(NfcTest, AsciiAndInvalidBytesPassThrough) {
  EXPECT_EQ(NfcNormalize("plain ascii 123"), "plain ascii 123");
  // e + combining acute -> U+00E9; Angstrom sign -> U+00C5; Hangul jamo L V T -> U+AC01.
  EXPECT_EQ(NfcNormalize(Utf8({'e', 0x301})), Utf8({0xE9}));
  EXPECT_EQ(NfcNormalize(Utf8({0x212B})), Utf8({0xC5}));
  EXPECT_EQ(NfcNormalize(Utf8({0x1100, 0x1161, 0x11A8})), Utf8({0xAC01}));
  // Marks reorder by combining class (dot below 220 before dot above 230) and then compose.
  EXPECT_EQ(NfcNormalize(Utf8({'q', 0x307, 0x323})), Utf8({'q', 0x323, 0x307}));
  EXPECT_EQ(NfcNormalize(Utf8({'d', 0x307, 0x323})), Utf8({0x1E0D, 0x307}));
  // An invalid byte stays where it is and blocks nothing around it from composing.
  const std::string invalid = "e\xff" + Utf8({'e', 0x301});
  EXPECT_EQ(NfcNormalize(invalid), "e\xff" + Utf8({0xE9}));
}

// A tokenizer.json with the NFC normalizer encodes decomposed text as the precomposed text;
// without it, the two differ.
TEST(BpeTinyTest, NfcNormalizerApplied) {
  auto nfc = BpeTokenizer::FromJson(TinyTokenizerJson(false, false, /*nfc=*/true), "tiny.json");
  auto none = BpeTokenizer::FromJson(TinyTokenizerJson(false, false), "tiny.json");
  ASSERT_TRUE(nfc.ok() && none.ok());
  const std::string composed = "caf" + Utf8({0xE9}) + "<|eot|>" + Utf8({0xC5});
  const std::string decomposed = "caf" + Utf8({'e', 0x301}) + "<|eot|>" + Utf8({0x212B});
  EXPECT_EQ((*nfc)->Encode(decomposed).value(), (*nfc)->Encode(composed).value());
  EXPECT_NE((*none)->Encode(decomposed).value(), (*none)->Encode(composed).value());
  EXPECT_EQ((*nfc)->Decode((*nfc)->Encode(decomposed).value()).value(), composed);
}

}  // namespace
}  // namespace tlt::models
