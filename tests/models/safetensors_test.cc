#include "runtime/file_util.h"
#include "models/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace tlt::models {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tlt_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    (void)::tlt::RemoveTree(std::string(dir_));
    fs::create_directories(dir_);
  }
  void TearDown() override { (void)::tlt::RemoveTree(std::string(dir_)); }
  std::string Path(const std::string& f) const { return (fs::path(dir_) / f).string(); }
  static TensorMap Sample() {
    torch::manual_seed(0);
    return {{"a.f32", torch::randn({3, 5})},
            {"b.bf16", torch::randn({4}).to(torch::kBFloat16)},
            {"c.f16", torch::randn({2, 2, 2}).to(torch::kFloat16)},
            {"d.i64", torch::arange(7, torch::kInt64)},
            {"e.i32", torch::arange(3, torch::kInt32)},
            {"f.u8", torch::arange(5, torch::kUInt8)},
            {"g.empty", torch::zeros({0, 3})},
            {"h.scalar", torch::tensor(2.5)}};
  }
  // Writes raw bytes: 8-byte header length, header, data.
  void WriteRaw(const std::string& path, const std::string& header, const std::string& data,
                int64_t declared_len = -1) {
    std::ofstream out(path, std::ios::binary);
    uint64_t n = declared_len >= 0 ? declared_len : header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header << data;
  }
  std::string dir_;
};

void ExpectSame(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_EQ(t.scalar_type(), b.at(name).scalar_type()) << name;
    EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  }
}

TEST_F(SafetensorsTest, RoundTripSingleFile) {
  TensorMap tensors = Sample();
  ASSERT_TRUE(WriteSafetensors(Path("x.safetensors"), tensors, {{"format", "pt"}}).ok());
  auto file = SafetensorsFile::Open(Path("x.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  auto all = (*file)->GetAll();
  ASSERT_TRUE(all.ok());
  ExpectSame(tensors, *all);
}

TEST_F(SafetensorsTest, TensorKeepsMappingAlive) {
  ASSERT_TRUE(WriteSafetensors(Path("x.safetensors"), Sample()).ok());
  torch::Tensor t;
  {
    auto file = SafetensorsFile::Open(Path("x.safetensors"));
    ASSERT_TRUE(file.ok());
    t = (*file)->Get("a.f32").value();
  }  // the handle is gone; the tensor still views the mapping
  EXPECT_TRUE(torch::equal(t, Sample()["a.f32"]));
  t.add_(1);  // copy-on-write: allowed, the file is unchanged
  auto again = SafetensorsFile::Open(Path("x.safetensors"));
  EXPECT_TRUE(torch::equal((*again)->Get("a.f32").value(), Sample()["a.f32"]));
}

TEST_F(SafetensorsTest, RoundTripSharded) {
  TensorMap tensors = Sample();
  ASSERT_TRUE(WriteCheckpointTensors(dir_, tensors, /*max_shard_bytes=*/40).ok());
  EXPECT_TRUE(fs::exists(Path("model.safetensors.index.json")));
  EXPECT_FALSE(fs::exists(Path("model.safetensors")));
  auto back = ReadCheckpointTensors(dir_);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSame(tensors, back->tensors);
  std::set<std::string> files;
  for (const auto& [n, f] : back->files) files.insert(f);
  EXPECT_GT(files.size(), 1u);
  // Unsharded replaces the index.
  ASSERT_TRUE(WriteCheckpointTensors(dir_, tensors).ok());
  EXPECT_FALSE(fs::exists(Path("model.safetensors.index.json")));
  auto single = ReadCheckpointTensors(dir_);
  ASSERT_TRUE(single.ok());
  ExpectSame(tensors, single->tensors);
}

TEST_F(SafetensorsTest, TruncatedFile) {
  ASSERT_TRUE(WriteSafetensors(Path("x.safetensors"), Sample()).ok());
  const auto size = fs::file_size(Path("x.safetensors"));
  fs::resize_file(Path("x.safetensors"), size - 3);
  auto f = SafetensorsFile::Open(Path("x.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("x.safetensors"), std::string::npos);
  EXPECT_NE(f.status().message().find("beyond"), std::string::npos) << f.status().ToString();
  WriteRaw(Path("tiny.safetensors"), "", "", 0);
  fs::resize_file(Path("tiny.safetensors"), 4);
  auto tiny = SafetensorsFile::Open(Path("tiny.safetensors"));
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().message().find("truncated"), std::string::npos);
}

TEST_F(SafetensorsTest, HeaderLengthOutOfRange) {
  WriteRaw(Path("h.safetensors"), "{}", "", 1000);
  auto f = SafetensorsFile::Open(Path("h.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("header length"), std::string::npos);
  WriteRaw(Path("j.safetensors"), "{not json", "");
  EXPECT_FALSE(SafetensorsFile::Open(Path("j.safetensors")).ok());
}

TEST_F(SafetensorsTest, OffsetsAndDtypeErrorsNameTensor) {
  WriteRaw(Path("o.safetensors"), R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})",
           std::string(8, '\0'));
  auto f = SafetensorsFile::Open(Path("o.safetensors"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("'w'"), std::string::npos);
  EXPECT_NE(f.status().message().find("beyond"), std::string::npos);
  WriteRaw(Path("s.safetensors"), R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
           std::string(8, '\0'));
  auto s = SafetensorsFile::Open(Path("s.safetensors"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("need 12"), std::string::npos) << s.status().ToString();
  WriteRaw(Path("d.safetensors"), R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})",
           std::string(2, '\0'));
  auto d = SafetensorsFile::Open(Path("d.safetensors"));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("F8_E4M3"), std::string::npos);
  EXPECT_NE(d.status().message().find("'w'"), std::string::npos);
  EXPECT_NE(d.status().message().find("d.safetensors"), std::string::npos);
  EXPECT_FALSE(TorchDtypeToSafetensors(torch::kComplexFloat).ok());
}

TEST_F(SafetensorsTest, ShapeChecksNameTensorAndFile) {
  ASSERT_TRUE(
      WriteCheckpointTensors(dir_, {{"w", torch::zeros({2, 3})}, {"b", torch::zeros({3})}}).ok());
  auto loaded = ReadCheckpointTensors(dir_);
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(CheckTensorShapes(*loaded, {{"w", {2, 3}}, {"b", {3}}}).ok());
  Status wrong = CheckTensorShapes(*loaded, {{"w", {3, 2}}, {"b", {3}}});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message().find("'w'"), std::string::npos);
  EXPECT_NE(wrong.message().find("model.safetensors"), std::string::npos);
  Status missing = CheckTensorShapes(*loaded, {{"w", {2, 3}}, {"b", {3}}, {"c", {1}}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("'c'"), std::string::npos);
  EXPECT_TRUE(CheckTensorShapes(*loaded, {{"w", {2, 3}}, {"b", {3}}, {"c", {1}}}, {"c"}).ok());
  Status unexpected = CheckTensorShapes(*loaded, {{"w", {2, 3}}});
  ASSERT_FALSE(unexpected.ok());
  EXPECT_NE(unexpected.message().find("unexpected tensor 'b'"), std::string::npos);
  auto none = ReadCheckpointTensors(Path("nowhere"));
  EXPECT_FALSE(none.ok());
}

}  // namespace
}  // namespace tlt::models
