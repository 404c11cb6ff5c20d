// Prompt datasets: JSONL files of {"prompt": ..., "answer": ...} plus optional fields, a prompt
// template, and a seeded cursor that walks the data in shuffled epochs.
//
// Each non-empty line of a JSONL file is one JSON object with string "prompt" and "answer" (a
// number is accepted for "answer" and written as text). Other top-level fields are kept in
// Example::fields as text (strings as they are, other JSON values serialized). Any broken line
// fails the whole load with a Status naming the file and the 1-based line number.
//
// PromptTemplate substitutes {prompt}, {answer} and {field_name} placeholders (unknown
// placeholders are an error at Apply time); "{{" and "}}" write literal braces.
//
// DataCursor is a plain value (copyable; its state is three integers) so that checkpoints can
// save it and a resumed run draws exactly the same prompts. No LibTorch; no synchronization.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::rl {

struct Example {
  std::string prompt;
  std::string answer;
  std::map<std::string, std::string> fields;  // other fields of the line
  std::string source;                         // "file:line" or a generator's name
};

class PromptTemplate {
 public:
  explicit PromptTemplate(std::string text = "{prompt}") : text_(std::move(text)) {}
  Result<std::string> Apply(const Example& example) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

// Parses JSONL text; `source` (a file name) prefixes every error and Example::source.
Result<std::vector<Example>> ParseJsonl(const std::string& text, const std::string& source);
Result<std::vector<Example>> ReadJsonl(const std::string& path);
// Writes examples as JSONL (prompt, answer and fields), the inverse of ReadJsonl.
Status WriteJsonl(const std::string& path, const std::vector<Example>& examples);

// Walks indices 0..size-1 in a fresh seeded permutation per epoch.
class DataCursor {
 public:
  struct State {
    uint64_t seed = 0;
    int64_t epoch = 0;
    int64_t position = 0;  // next index within the epoch's permutation
  };
  DataCursor(int64_t size, uint64_t seed) : size_(size) { state_.seed = seed; }
  // The next `count` indices (crossing epoch boundaries as needed).
  std::vector<int64_t> Next(int64_t count);
  const State& state() const { return state_; }
  // Fails if the state does not fit this dataset size.
  Status Restore(const State& state);
  int64_t size() const { return size_; }

 private:
  std::vector<int64_t> Permutation(int64_t epoch) const;
  int64_t size_;
  State state_;
};

}  // namespace tlt::rl
