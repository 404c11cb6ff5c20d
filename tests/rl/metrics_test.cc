// Metrics JSONL, percentiles and the PNG writer.
#include "rl/metrics.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "rl/plot.h"

namespace tlt::rl {
namespace {

TEST(MetricsTest, NearestRankPercentiles) {
  std::vector<double> v = {5, 1, 4, 2, 3, 6, 7, 8, 9, 10};
  EXPECT_EQ(Percentile(v, 50), 5);
  EXPECT_EQ(Percentile(v, 90), 9);
  EXPECT_EQ(Percentile(v, 99), 10);
  EXPECT_EQ(Percentile(v, 100), 10);
  EXPECT_EQ(Percentile(v, 0), 1);
  EXPECT_EQ(Percentile({}, 50), 0);
  MetricsRecord r;
  AddDistribution("len", {1, 2, 3, 10}, &r);
  EXPECT_EQ(r.at("len_mean"), 4);
  EXPECT_EQ(r.at("len_p50"), 2);
  EXPECT_EQ(r.at("len_max"), 10);
}

TEST(MetricsTest, JsonlRoundTrip) {
  std::string path = ::testing::TempDir() + "/rl_metrics_test.jsonl";
  std::remove(path.c_str());
  {
    auto w = MetricsWriter::Open(path);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write({{"step", 1}, {"reward_mean", 0.25}}).ok());
    ASSERT_TRUE((*w)->Write({{"step", 2}, {"reward_mean", 0.5}}).ok());
  }
  auto r = ReadMetrics(path);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[1].at("reward_mean"), 0.5);
  std::ofstream(path, std::ios::app) << "{broken\n";
  EXPECT_NE(ReadMetrics(path).status().message().find(":3:"), std::string::npos);
  std::remove(path.c_str());
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

uint32_t U32(const std::string& s, size_t at) {
  return (uint8_t(s[at]) << 24) | (uint8_t(s[at + 1]) << 16) | (uint8_t(s[at + 2]) << 8) |
         uint8_t(s[at + 3]);
}

TEST(PlotTest, PngIsValidAndDecodesToThePixels) {
  std::string path = ::testing::TempDir() + "/rl_plot_test.png";
  std::vector<uint8_t> rgb(4 * 3 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 7);
  ASSERT_TRUE(WritePng(path, 4, 3, rgb).ok());
  std::string png = Slurp(path);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(U32(png, 16), 4u);  // IHDR width
  EXPECT_EQ(U32(png, 20), 3u);
  // Walk chunks, check CRCs, inflate IDAT and compare with the pixels.
  size_t at = 8;
  std::string idat;
  while (at < png.size()) {
    uint32_t len = U32(png, at);
    std::string type = png.substr(at + 4, 4);
    uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), len + 4);
    EXPECT_EQ(crc, U32(png, at + 8 + len)) << type;
    if (type == "IDAT") idat += png.substr(at + 8, len);
    at += 12 + len;
  }
  std::string raw(3 * (4 * 3 + 1), '\0');
  uLongf raw_size = raw.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(&raw[0]), &raw_size,
                       reinterpret_cast<const Bytef*>(idat.data()), idat.size()),
            Z_OK);
  for (int y = 0; y < 3; ++y) {
    EXPECT_EQ(raw[y * 13], 0);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(uint8_t(raw[y * 13 + 1 + i]), rgb[y * 12 + i]);
  }
  std::vector<MetricsRecord> recs;
  for (int s = 0; s < 20; ++s) recs.push_back({{"step", s}, {"reward_mean", s * 0.05}});
  ASSERT_TRUE(PlotMetrics(recs, {"reward_mean"}, path).ok());
  EXPECT_GT(Slurp(path).size(), 500u);
  EXPECT_FALSE(PlotMetrics(recs, {"nope"}, path).ok());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tlt::rl
