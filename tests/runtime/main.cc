// Test main for runtime_tests: in a worker process tlt::Init() runs the worker instead.
#include <gtest/gtest.h>

#include "runtime/cluster.h"

int main(int argc, char** argv) {
  tlt::Init(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
