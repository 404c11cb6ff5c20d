// Tokenizer: text <-> token ids, for prompts and for reading generated answers.
//
// Two implementations: CharTokenizer (one id per character of a fixed alphabet plus special
// tokens; for synthetic tasks and tests) and BpeTokenizer (Hugging Face tokenizer.json,
// byte-level BPE of the Qwen2 / Llama-3 family). Both recognize their special/added tokens
// written literally in the text ("<|im_start|>") and map them to their ids.
//
// Immutable after construction; every method is const and thread-safe. No LibTorch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/status.h"

namespace tlt::models {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text (UTF-8) -> ids. Fails (kInvalidArgument) on text the vocabulary cannot express.
  virtual Result<std::vector<int64_t>> Encode(const std::string& text) const = 0;
  // Ids -> text; special tokens are written as their content. Fails on an unknown id.
  virtual Result<std::string> Decode(const std::vector<int64_t>& ids) const = 0;
  // Number of ids (the largest id + 1).
  virtual int64_t vocab_size() const = 0;
  // Id of a token written exactly as in the vocabulary (or a special token's content).
  virtual std::optional<int64_t> TokenToId(const std::string& token) const = 0;
};

// Ids 0 .. specials-1 are the special tokens in the given order, then one id per alphabet
// character (UTF-8 code points; duplicates are an error, reported by Create).
class CharTokenizer : public Tokenizer {
 public:
  static Result<std::unique_ptr<CharTokenizer>> Create(const std::string& alphabet,
                                                       const std::vector<std::string>& specials);
  Result<std::vector<int64_t>> Encode(const std::string& text) const override;
  Result<std::string> Decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  std::optional<int64_t> TokenToId(const std::string& token) const override;

 private:
  CharTokenizer() = default;
  std::vector<std::string> tokens_;  // id -> text
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::string> specials_;
};

// Byte-level BPE from a tokenizer.json: the NFC normalizer (applied to the text between added
// tokens, as Hugging Face tokenizers does for added tokens that are not normalized), the Qwen2
// pre-tokenizer split (or Llama-3's, with up to 3 digits per number), implemented by a
// hand-written scanner with the regex's leftmost-first semantics, GPT-2 byte-to-unicode
// mapping, merges by rank, added tokens split out first; `ignore_merges` honoured. Encode adds no BOS/EOS (the post-processor is not applied).
// Decode writes raw bytes (invalid UTF-8 is passed through, not replaced).
class BpeTokenizer : public Tokenizer {
 public:
  // Fails naming the file for unsupported normalizers, pre-tokenizers or models.
  static Result<std::unique_ptr<BpeTokenizer>> FromFile(const std::string& path);
  static Result<std::unique_ptr<BpeTokenizer>> FromJson(const std::string& json_text,
                                                        const std::string& source);
  Result<std::vector<int64_t>> Encode(const std::string& text) const override;
  Result<std::string> Decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  std::optional<int64_t> TokenToId(const std::string& token) const override;

  // The pre-tokenizer's pieces of `text` (no added-token handling); exposed for tests.
  std::vector<std::string> PreTokenize(const std::string& text) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  BpeTokenizer() = default;
  Status EncodeWord(const std::string& piece, std::vector<int64_t>* out) const;

  int max_digits_ = 1;          // Qwen2: \p{N}; Llama-3: \p{N}{1,3}
  bool normalize_nfc_ = false;  // normalizer NFC
  bool ignore_merges_ = false;  // Llama-3: a word already in the vocabulary is not merged
  std::unordered_map<std::string, int64_t> token_to_id_;
  std::vector<std::string> id_to_token_;                // "" for holes
  std::unordered_map<uint64_t, Merge> merges_;          // (left id << 32 | right id) -> merge
  std::vector<std::pair<std::string, int64_t>> added_;  // content -> id, longest first
  std::vector<bool> is_added_;
  std::string byte_to_unicode_[256];  // UTF-8 of the mapped char
  std::unordered_map<char32_t, uint8_t> unicode_to_byte_;
};

}  // namespace tlt::models
