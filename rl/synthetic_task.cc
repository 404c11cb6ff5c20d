#include "rl/synthetic_task.h"

#include <algorithm>
#include <cmath>

#include "models/splitmix64.h"

namespace tlt::rl {
namespace {

using models::SplitMix64;

// A counter-based stream (splitmix64), so example i does not depend on the others.
class Stream {
 public:
  Stream(uint64_t seed, int64_t index)
      : state_(SplitMix64(seed) ^ SplitMix64(static_cast<uint64_t>(index) + 17)) {}
  uint64_t Next() { return SplitMix64(state_ += 0x632BE59BD9B4E019ULL); }
  double Uniform() { return (Next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)

 private:
  uint64_t state_;
};

}  // namespace

const char* SyntheticTaskAlphabet() { return "0123456789+=;#"; }

Result<CharVocab> SyntheticTaskVocab() { return CharVocab::Create(SyntheticTaskAlphabet()); }

std::string SyntheticSolution(const std::vector<int64_t>& operands, int64_t modulus) {
  std::string out;
  int64_t sum = operands.empty() ? 0 : operands[0];
  for (size_t i = 1; i < operands.size(); ++i) {
    int64_t next = sum + operands[i];
    if (modulus > 0) next %= modulus;
    out +=
        std::to_string(sum) + "+" + std::to_string(operands[i]) + "=" + std::to_string(next) + ";";
    sum = next;
  }
  return out + "####" + std::to_string(sum);
}

Example SyntheticExample(const SyntheticTaskOptions& o, uint64_t seed, int64_t index) {
  Stream rng(seed, index);
  // Pareto(x_m = 1, alpha) by inversion, minus 1: P(extra >= k) = (k + 1)^-alpha.
  double u = 1.0 - rng.Uniform();  // (0, 1]
  double extra = std::floor(std::pow(u, -1.0 / o.tail_alpha) - 1.0);
  int64_t n = o.min_terms + static_cast<int64_t>(std::min(extra, 1e9));
  n = std::clamp<int64_t>(n, std::max<int64_t>(o.min_terms, 1), std::max(o.max_terms, o.min_terms));
  int64_t range = o.modulus > 0 ? o.modulus : o.max_operand + 1;
  std::vector<int64_t> operands(n);
  for (auto& x : operands) x = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(range));

  Example e;
  for (int64_t i = 0; i < n; ++i) e.prompt += (i ? "+" : "") + std::to_string(operands[i]);
  e.prompt += "=";
  std::string solution = SyntheticSolution(operands, o.modulus);
  e.answer = solution.substr(solution.rfind("####") + 4);
  e.fields["solution"] = solution;
  e.fields["terms"] = std::to_string(n);
  e.source = "synthetic:" + std::to_string(seed) + ":" + std::to_string(index);
  return e;
}

std::vector<Example> SyntheticDataset(const SyntheticTaskOptions& options, uint64_t seed,
                                      int64_t count) {
  std::vector<Example> out;
  out.reserve(count);
  for (int64_t i = 0; i < count; ++i) out.push_back(SyntheticExample(options, seed, i));
  return out;
}

}  // namespace tlt::rl
