// Reward functions: pure functions of (response text, example) -> reward.
//
// Math answers: ExtractFinalAnswer() takes, in order of preference, the content of the last
// \boxed{...} (balanced braces), the text after the last "####", or the last number in the text.
// ParseNumber() reads integers, decimals ("-1.50", "1,000") and fractions ("3/4", "\frac{3}{4}")
// as an exact rational, so answers compare by value: "0.5" == "1/2" == "\frac{1}{2}".
// Anything else falls back to comparing trimmed strings.
//
// RewardRegistry maps names to functions so a run config can say reward: "math". Built in:
//   "math"   1 if the final answer equals the example's answer by value, else 0
//   "format" 1 if the response has an explicit final answer (\boxed{} or "####"), else 0
//   "math_and_format" math + 0.1 * format (a shaped reward)
// The registry is thread-compatible: register at start-up, then read from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rl/dataset.h"
#include "runtime/status.h"

namespace tlt::rl {

using RewardFunction = std::function<double(const std::string& response, const Example& example)>;

// An exact rational num/den with den > 0, reduced.
struct Rational {
  int64_t num = 0;
  int64_t den = 1;
  bool operator==(const Rational& o) const { return num == o.num && den == o.den; }
};

std::optional<std::string> ExtractFinalAnswer(const std::string& text);
std::optional<Rational> ParseNumber(const std::string& text);
// By value when both parse as numbers, else trimmed string equality.
bool AnswersMatch(const std::string& predicted, const std::string& expected);

double MathReward(const std::string& response, const Example& example);
double FormatReward(const std::string& response, const Example& example);

class RewardRegistry {
 public:
  // With the built-in functions.
  RewardRegistry();
  // Fails if the name is taken.
  Status Register(const std::string& name, RewardFunction function);
  Result<RewardFunction> Get(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, RewardFunction> functions_;
};

}  // namespace tlt::rl
