// tlt_rl_plot: renders a training metrics JSONL file (rl::MetricsWriter) as PNG plots.
//
//   tlt_rl_plot METRICS.jsonl OUT_PREFIX
// writes OUT_PREFIX_reward.png (reward_mean blue, accuracy red) and OUT_PREFIX_length.png
// (response_length p50 blue, p90 red, p99 green, max orange), x axis = step.
#include <cstdio>

#include "rl/metrics.h"
#include "rl/plot.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s METRICS.jsonl OUT_PREFIX\n", argv[0]);
    return 2;
  }
  auto records = tlt::rl::ReadMetrics(argv[1]);
  if (!records.ok()) {
    std::fprintf(stderr, "%s\n", records.status().ToString().c_str());
    return 1;
  }
  const std::string prefix = argv[2];
  struct Plot {
    std::string suffix;
    std::vector<std::string> metrics;
  };
  for (const Plot& p : {Plot{"_reward.png", {"reward_mean", "accuracy"}},
                        Plot{"_length.png",
                             {"response_length_p50", "response_length_p90", "response_length_p99",
                              "response_length_max"}}}) {
    tlt::Status st = tlt::rl::PlotMetrics(*records, p.metrics, prefix + p.suffix);
    if (!st.ok()) {
      std::fprintf(stderr, "%s: %s\n", (prefix + p.suffix).c_str(), st.ToString().c_str());
      return 1;
    }
    std::printf("wrote %s\n", (prefix + p.suffix).c_str());
  }
  return 0;
}
