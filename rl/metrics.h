// Per-step training metrics as JSONL, and the statistics that go into them.
//
// A MetricsRecord is an ordered name -> number map (reward_mean, accuracy, response_length_p50,
// loss terms, timings in seconds, ...); MetricsWriter appends one JSON object per line and
// flushes after each line, so a crashed run keeps every finished step. ReadMetrics() parses such
// a file back (non-numeric values are skipped); a broken line names the file and line.
//
// Percentiles use the nearest-rank definition: the smallest value with at least p% of the data at
// or below it. No LibTorch; MetricsWriter is not thread-safe (one writer per file).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::rl {

using MetricsRecord = std::map<std::string, double>;

// Nearest-rank percentile, p in [0, 100]; 0 for an empty input.
double Percentile(std::vector<double> values, double p);

// Adds <prefix>_mean, _p50, _p90, _p99, _max of `values` to `record`.
void AddDistribution(const std::string& prefix, const std::vector<double>& values,
                     MetricsRecord* record);

class MetricsWriter {
 public:
  // Opens `path` for appending (created if missing).
  static Result<std::unique_ptr<MetricsWriter>> Open(const std::string& path);
  Status Write(const MetricsRecord& record);

 private:
  std::ofstream out_;
  std::string path_;
};

Result<std::vector<MetricsRecord>> ReadMetrics(const std::string& path);

}  // namespace tlt::rl
