// Metrics JSONL, percentiles and the PNG plotter (LibTorch-free).
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "rl/metrics.h"
#include "rl/plot.h"

namespace tlt::rl {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  double rank = std::ceil(p / 100.0 * values.size());
  size_t i = static_cast<size_t>(std::clamp(rank, 1.0, double(values.size()))) - 1;
  return values[i];
}

void AddDistribution(const std::string& prefix, const std::vector<double>& values,
                     MetricsRecord* record) {
  double sum = 0;
  for (double v : values) sum += v;
  (*record)[prefix + "_mean"] = values.empty() ? 0.0 : sum / values.size();
  (*record)[prefix + "_p50"] = Percentile(values, 50);
  (*record)[prefix + "_p90"] = Percentile(values, 90);
  (*record)[prefix + "_p99"] = Percentile(values, 99);
  (*record)[prefix + "_max"] = Percentile(values, 100);
}

Result<std::unique_ptr<MetricsWriter>> MetricsWriter::Open(const std::string& path) {
  auto w = std::unique_ptr<MetricsWriter>(new MetricsWriter());
  w->path_ = path;
  w->out_.open(path, std::ios::app);
  if (!w->out_) return IoError("cannot open metrics file " + path);
  return w;
}

Status MetricsWriter::Write(const MetricsRecord& record) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : record) j[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
  out_ << j.dump() << "\n";
  out_.flush();
  return out_ ? Status::OK() : IoError("writing metrics to " + path_);
}

Result<std::vector<MetricsRecord>> ReadMetrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open metrics file " + path);
  std::vector<MetricsRecord> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return InvalidArgument(path + ":" + std::to_string(n) + ": not a JSON object");
    }
    MetricsRecord r;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it->is_number()) r[it.key()] = it->get<double>();
    }
    out.push_back(std::move(r));
  }
  return out;
}

// ---------------------------------------------------------------- PNG
namespace {

void PutU32(std::string* s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void Chunk(std::string* png, const char* type, const std::string& data) {
  PutU32(png, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  png->append(body);
  PutU32(png, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()),
                                          static_cast<uInt>(body.size()))));
}

// 3x5 digits plus '-', '.', 'e' for axis labels; each row 3 bits, MSB left.
const uint8_t kFont[13][5] = {{7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7},
                              {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1},
                              {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}, {0, 0, 7, 0, 0}, {0, 0, 0, 0, 2},
                              {7, 4, 7, 4, 7}};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), rgb_(size_t(w) * h * 3, 255) {}
  void Set(int x, int y, const uint8_t* c) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    std::copy(c, c + 3, &rgb_[(size_t(y) * w_ + x) * 3]);
  }
  void Line(double x0, double y0, double x1, double y1, const uint8_t* c) {
    int steps = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int i = 0; i <= steps; ++i) {
      double t = double(i) / steps;
      int x = int(std::lround(x0 + t * (x1 - x0))), y = int(std::lround(y0 + t * (y1 - y0)));
      Set(x, y, c);
      Set(x, y + 1, c);  // 2 px thick
    }
  }
  void Text(int x, int y, const std::string& s, const uint8_t* c) {  // 2x scaled glyphs
    for (char ch : s) {
      int g = ch >= '0' && ch <= '9' ? ch - '0'
              : ch == '-'            ? 10
              : ch == '.'            ? 11
              : ch == 'e'            ? 12
                                     : -1;
      if (g >= 0) {
        for (int r = 0; r < 5; ++r)
          for (int b = 0; b < 3; ++b)
            if (kFont[g][r] & (4 >> b))
              for (int d = 0; d < 4; ++d) Set(x + 2 * b + d % 2, y + 2 * r + d / 2, c);
      }
      x += 8;
    }
  }
  const std::vector<uint8_t>& rgb() const { return rgb_; }

 private:
  int w_, h_;
  std::vector<uint8_t> rgb_;
};

std::string Label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

}  // namespace

Status WritePng(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  if (width <= 0 || height <= 0 || rgb.size() != size_t(width) * height * 3) {
    return InvalidArgument("WritePng: buffer does not match " + std::to_string(width) + "x" +
                           std::to_string(height));
  }
  std::string raw;
  raw.reserve(size_t(height) * (width * 3 + 1));
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    raw.append(reinterpret_cast<const char*>(&rgb[size_t(y) * width * 3]), size_t(width) * 3);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(&packed[0]), &packed_size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                6) != Z_OK) {
    return Internal("WritePng: zlib compress failed");
  }
  packed.resize(packed_size);
  std::string png("\x89PNG\r\n\x1a\n", 8), ihdr;
  PutU32(&ihdr, width);
  PutU32(&ihdr, height);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, deflate, no filter, no interlace
  Chunk(&png, "IHDR", ihdr);
  Chunk(&png, "IDAT", packed);
  Chunk(&png, "IEND", "");
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(png.data(), static_cast<std::streamsize>(png.size()));
  return f ? Status::OK() : IoError("cannot write " + path);
}

Status PlotMetrics(const std::vector<MetricsRecord>& records,
                   const std::vector<std::string>& metrics, const std::string& png_path,
                   const PlotOptions& o) {
  static const uint8_t kColors[5][3] = {
      {31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {255, 127, 14}, {148, 103, 189}};
  const uint8_t black[3] = {0, 0, 0}, grey[3] = {200, 200, 200};
  double x_min = 1e300, x_max = -1e300, y_min = 1e300, y_max = -1e300;
  std::vector<std::vector<std::pair<double, double>>> curves(metrics.size());
  for (size_t i = 0; i < records.size(); ++i) {
    auto xs = records[i].find(o.x_key);
    double x = xs != records[i].end() ? xs->second : double(i);
    for (size_t m = 0; m < metrics.size(); ++m) {
      auto it = records[i].find(metrics[m]);
      if (it == records[i].end() || !std::isfinite(it->second)) continue;
      curves[m].push_back({x, it->second});
      x_min = std::min(x_min, x), x_max = std::max(x_max, x);
      y_min = std::min(y_min, it->second), y_max = std::max(y_max, it->second);
    }
  }
  if (x_min > x_max) return InvalidArgument("PlotMetrics: no record has any requested metric");
  if (x_max == x_min) x_max = x_min + 1;
  if (y_max == y_min) y_max = y_min + 1;
  const int left = 70, right = 20, top = 20, bottom = 40;
  const int pw = o.width - left - right, ph = o.height - top - bottom;
  Canvas c(o.width, o.height);
  auto X = [&](double x) { return left + (x - x_min) / (x_max - x_min) * pw; };
  auto Y = [&](double y) { return top + ph - (y - y_min) / (y_max - y_min) * ph; };
  for (int k = 0; k <= 4; ++k) {  // grid and labels
    double fy = y_min + (y_max - y_min) * k / 4, fx = x_min + (x_max - x_min) * k / 4;
    c.Line(left, Y(fy), left + pw, Y(fy), grey);
    c.Text(4, int(Y(fy)) - 5, Label(fy), black);
    c.Text(int(X(fx)) - 10, top + ph + 12, Label(fx), black);
  }
  c.Line(left, top, left, top + ph, black);
  c.Line(left, top + ph, left + pw, top + ph, black);
  for (size_t m = 0; m < curves.size(); ++m) {
    const uint8_t* color = kColors[m % 5];
    for (size_t i = 1; i < curves[m].size(); ++i) {
      c.Line(X(curves[m][i - 1].first), Y(curves[m][i - 1].second), X(curves[m][i].first),
             Y(curves[m][i].second), color);
    }
    if (curves[m].size() == 1)
      c.Line(X(curves[m][0].first), Y(curves[m][0].second), X(curves[m][0].first) + 1,
             Y(curves[m][0].second), color);
  }
  return WritePng(png_path, o.width, o.height, c.rgb());
}

}  // namespace tlt::rl
