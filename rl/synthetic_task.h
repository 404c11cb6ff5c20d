// The bundled synthetic reasoning task: "chain sums" with step-by-step worked solutions whose
// lengths are long-tailed, like the responses of reasoning models (see docs/synthetic-task.md).
//
// A problem is a chain of n operands, "12+7+33+5=". The worked solution adds them left to right,
// one step per operand, then states the answer after "####":
//   "12+7=19;19+33=52;52+5=57;####57"
// With a modulus m > 0 every running sum is taken mod m (operands then lie in [0, m)), which
// keeps numbers short for tiny models. The number of operands n is min_terms plus a
// Pareto-distributed (tail index tail_alpha) count, capped at max_terms: most chains are short,
// a few are very long, so solution lengths have p99 many times the median.
//
// Generation is a pure function of (options, seed, index): example i is the same whatever else is
// generated. The alphabet is "0123456789+=;#"; the answer is checked by rl::MathReward (the text
// after "####"). No LibTorch; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rl/char_vocab.h"
#include "rl/dataset.h"
#include "runtime/status.h"

namespace tlt::rl {

struct SyntheticTaskOptions {
  int64_t min_terms = 2;
  int64_t max_terms = 40;
  double tail_alpha = 1.0;   // Pareto tail index of the extra terms; smaller: heavier tail
  int64_t max_operand = 99;  // operands uniform in [0, max_operand] (or [0, modulus) if set)
  int64_t modulus = 0;       // > 0: running sums mod this
};

// Alphabet of the task's text; specials "<pad>" (0) and "<eos>" (1).
const char* SyntheticTaskAlphabet();
Result<CharVocab> SyntheticTaskVocab();

// Example `index` of the stream `seed`: prompt "a+b+...=", answer, and in fields["solution"] the
// worked solution (the SFT target, without the end-of-sequence token) and fields["terms"].
Example SyntheticExample(const SyntheticTaskOptions& options, uint64_t seed, int64_t index);
std::vector<Example> SyntheticDataset(const SyntheticTaskOptions& options, uint64_t seed,
                                      int64_t count);
// The worked solution for a list of operands (what a perfect policy writes).
std::string SyntheticSolution(const std::vector<int64_t>& operands, int64_t modulus);

}  // namespace tlt::rl
