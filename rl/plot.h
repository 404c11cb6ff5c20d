// Plots of training curves as PNG files, with no plotting library: an RGB canvas with lines,
// a frame and a small built-in digit font for axis labels, written as PNG through zlib.
//
// PlotMetrics() draws, for each requested metric name, one curve of value against "step" (or
// the record index when records lack "step") into one image; y-axis range from the data.
// Pure functions of their inputs, thread-safe. No LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rl/metrics.h"
#include "runtime/status.h"

namespace tlt::rl {

// Writes an 8-bit RGB image (row-major, width * height * 3 bytes) as a PNG file.
Status WritePng(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

struct PlotOptions {
  int width = 640;
  int height = 400;
  std::string x_key = "step";
};

// One image with a curve per metric (distinct colors, listed in order: blue, red, green,
// orange, purple). Fails if no record has any of the metrics.
Status PlotMetrics(const std::vector<MetricsRecord>& records,
                   const std::vector<std::string>& metrics, const std::string& png_path,
                   const PlotOptions& options = {});

}  // namespace tlt::rl
