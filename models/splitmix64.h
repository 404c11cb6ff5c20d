// SplitMix64: one step of the splitmix64 generator used as a hash (add the golden-ratio
// increment, then the 64-bit finalizer), the hash behind every counter-based random stream here
// (sampling's CounterUniform, the synthetic RL task's examples).
//
// A pure bijection on uint64_t with good avalanche: feed it a seed combined with a counter and
// each output is an independent-looking 64-bit word, so draw i never depends on draws before it.
// Header-only and free of LibTorch, so plain C++ sources (rl/synthetic_task.cc, compiled into
// bench/speculative_bench directly) can use it. Changing it changes every seeded result.
#pragma once

#include <cstdint>

namespace tlt::models {

constexpr uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace tlt::models
