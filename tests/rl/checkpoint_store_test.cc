// Checkpoint store: names, listing, verification, the latest valid checkpoint, and retention that
// never deletes the latest valid checkpoint, the one just written, or one being written.
#include "rl/checkpoint_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "rl/checkpoint.h"
#include "rl_test_util.h"
#include "runtime/file_util.h"

namespace tlt::rl {
namespace {

namespace fs = std::filesystem;

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / "rl_checkpoint_store_test";
    (void)::tlt::RemoveTree(root_.string());
    fs::create_directories(root_);
    learner_ = std::make_unique<Learner>(testing::TinyModel(testing::TinyConfig(13, 16, 1), 1),
                                         LearnerOptions());
  }
  std::string Save(int64_t step) {
    std::string dir = (root_ / CheckpointName(step)).string();
    TrainingState state;
    state.step = step;
    EXPECT_TRUE(SaveCheckpoint(dir, *learner_, state).ok());
    return dir;
  }
  static void Corrupt(const std::string& dir) {
    std::fstream f(dir + "/state.json", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.put('#');
  }
  std::vector<int64_t> Steps() {
    std::vector<int64_t> out;
    auto listed = ListCheckpoints(root_.string());
    EXPECT_TRUE(listed.ok());
    for (const CheckpointEntry& e : *listed) out.push_back(e.step);
    return out;
  }

  fs::path root_;
  std::unique_ptr<Learner> learner_;
};

TEST_F(CheckpointStoreTest, NamesListingAndVerification) {
  EXPECT_EQ(CheckpointName(12), "step-00000012");
  auto none = ListCheckpoints((root_ / "missing").string());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(LatestValidCheckpoint(root_.string()).status().code(), ErrorCode::kNotFound);
  for (int64_t step : {3, 10, 1}) Save(step);
  fs::create_directories(root_ / "step-00000011.tmp-4242");  // being written
  fs::create_directories(root_ / "step-x");
  std::ofstream(root_ / "step-00000012") << "a file, not a directory";
  EXPECT_EQ(Steps(), (std::vector<int64_t>{1, 3, 10}));
  EXPECT_TRUE(VerifyCheckpoint((root_ / CheckpointName(10)).string()).ok());
  Corrupt((root_ / CheckpointName(10)).string());
  Status st = VerifyCheckpoint((root_ / CheckpointName(10)).string());
  EXPECT_NE(st.message().find("state.json does not match its checksum"), std::string::npos)
      << st.message();
  EXPECT_EQ(*LatestValidCheckpoint(root_.string()), (root_ / CheckpointName(3)).string());
}

TEST_F(CheckpointStoreTest, KeepsTheLastKAndNeverTheWrongOnes) {
  for (int64_t step = 1; step <= 5; ++step) Save(step);
  const fs::path writing = root_ / "step-00000006.tmp-4242";
  fs::create_directories(writing);
  std::vector<std::string> removed;
  ASSERT_TRUE(PruneCheckpoints(root_.string(), 0, "", &removed).ok());  // 0: keep all
  EXPECT_TRUE(removed.empty());
  ASSERT_TRUE(PruneCheckpoints(root_.string(), 3, "", &removed).ok());
  EXPECT_EQ(Steps(), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_TRUE(fs::exists(writing));

  // The two newest are corrupted: the latest valid one (3) stays although it is not among them.
  Corrupt((root_ / CheckpointName(4)).string());
  Corrupt((root_ / CheckpointName(5)).string());
  ASSERT_TRUE(PruneCheckpoints(root_.string(), 2).ok());
  EXPECT_EQ(Steps(), (std::vector<int64_t>{3, 4, 5}));
  ASSERT_TRUE(PruneCheckpoints(root_.string(), 1).ok());
  EXPECT_EQ(Steps(), (std::vector<int64_t>{3, 5}));

  // The protected checkpoint (the one just written) stays even when it is not among the newest.
  Save(7);
  Save(8);
  ASSERT_TRUE(PruneCheckpoints(root_.string(), 1, (root_ / CheckpointName(7)).string()).ok());
  EXPECT_EQ(Steps(), (std::vector<int64_t>{7, 8}));
  EXPECT_TRUE(fs::exists(writing));
  EXPECT_EQ(*LatestValidCheckpoint(root_.string()), (root_ / CheckpointName(8)).string());
}

}  // namespace
}  // namespace tlt::rl
