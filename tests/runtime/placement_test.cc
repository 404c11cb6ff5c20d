#include "runtime/placement.h"

#include <gtest/gtest.h>

#include <set>

namespace tlt {
namespace {

constexpr uint64_t kGiB = 1ull << 30;

GpuInfo Gpu(int index, const std::string& type, uint64_t memory = 80 * kGiB) {
  return GpuInfo{index, type, memory, true};
}

// A node with nothing reserved (available == total).
NodeView Node(const std::string& id, double cpus, std::vector<GpuInfo> gpus = {},
              std::map<std::string, double> custom = {}) {
  NodeView node;
  node.node_id = id;
  node.total = NodeResources{cpus, std::move(gpus), std::move(custom)};
  node.available = node.total;
  return node;
}

ResourceRequest Req(double cpus, int gpus = 0, const std::string& type = "", uint64_t memory = 0) {
  ResourceRequest req;
  req.cpus = cpus;
  req.gpus = gpus;
  req.gpu_type = type;
  req.gpu_memory_bytes = memory;
  return req;
}

PlacementOptions With(PlacementStrategy strategy, const std::string& node = "", bool soft = false) {
  PlacementOptions opts;
  opts.strategy = strategy;
  opts.node_id = node;
  opts.soft = soft;
  return opts;
}

// Reserves `cpus` on the node so that its load changes.
void Use(NodeView* node, double cpus) {
  ASSERT_TRUE(Reserve(&node->available, Allocation{node->node_id, cpus, {}, {}}).ok());
}

TEST(FitsTest, HonorsGpuTypeMemoryAndCount) {
  NodeResources r{8, {Gpu(0, "A100", 40 * kGiB), Gpu(1, "H200", 141 * kGiB)}, {}};
  EXPECT_TRUE(Fits(r, Req(8, 2)));
  EXPECT_FALSE(Fits(r, Req(8.5)));
  EXPECT_FALSE(Fits(r, Req(1, 3)));
  EXPECT_TRUE(Fits(r, Req(1, 1, "H200")));
  EXPECT_FALSE(Fits(r, Req(1, 2, "H200")));
  EXPECT_FALSE(Fits(r, Req(1, 1, "B200")));
  EXPECT_TRUE(Fits(r, Req(1, 1, "", 80 * kGiB)));
  EXPECT_FALSE(Fits(r, Req(1, 2, "", 80 * kGiB)));
  EXPECT_FALSE(Fits(r, Req(1, 1, "A100", 80 * kGiB)));
}

TEST(FitsTest, CustomResources) {
  NodeResources r{4, {}, {{"ssd", 1}}};
  ResourceRequest req = Req(1);
  req.custom = {{"ssd", 1}};
  EXPECT_TRUE(Fits(r, req));
  req.custom = {{"ssd", 1.5}};
  EXPECT_FALSE(Fits(r, req));
  req.custom = {{"tpu", 1}};
  EXPECT_FALSE(Fits(r, req));
}

TEST(DescribeRequestTest, NamesEverySetField) {
  EXPECT_EQ(DescribeRequest(Req(1, 1, "H200")), "cpus=1 gpus=1 gpu_type=H200");
  ResourceRequest req = Req(0.5, 2, "", 80 * kGiB);
  req.custom = {{"ssd", 1}};
  EXPECT_EQ(DescribeRequest(req), "cpus=0.5 gpus=2 gpu_memory=80GiB ssd=1");
}

TEST(PlaceActorTest, DefaultPicksLeastLoadedThenNodeId) {
  std::vector<NodeView> nodes = {Node("c", 4), Node("a", 4), Node("b", 4)};
  auto tie = PlaceActor(nodes, Req(1), {});
  ASSERT_TRUE(tie.ok()) << tie.status().ToString();
  EXPECT_EQ(tie->node_id, "a");
  Use(&nodes[1], 2);  // a: 50%
  Use(&nodes[2], 1);  // b: 25%
  auto least = PlaceActor(nodes, Req(1), {});
  ASSERT_TRUE(least.ok());
  EXPECT_EQ(least->node_id, "c");
  EXPECT_DOUBLE_EQ(least->cpus, 1);
}

TEST(PlaceActorTest, PackPicksMostLoadedThatFits) {
  std::vector<NodeView> nodes = {Node("a", 4), Node("b", 4), Node("c", 4)};
  Use(&nodes[1], 2);  // b: 50%
  Use(&nodes[2], 4);  // c: full, cannot fit
  auto placed = PlaceActor(nodes, Req(1), With(PlacementStrategy::kPack));
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(placed->node_id, "b");
}

TEST(PlaceActorTest, SpreadPicksFewestActors) {
  std::vector<NodeView> nodes = {Node("a", 4), Node("b", 4), Node("c", 4)};
  nodes[0].num_actors = 3;
  nodes[1].num_actors = 1;
  nodes[2].num_actors = 2;
  Use(&nodes[1], 3);  // b is the most loaded but has the fewest actors
  auto placed = PlaceActor(nodes, Req(1), With(PlacementStrategy::kSpread));
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(placed->node_id, "b");
}

TEST(PlaceActorTest, NodeAffinityHardAndSoft) {
  std::vector<NodeView> nodes = {Node("a", 4), Node("b", 4)};
  Use(&nodes[1], 3);
  auto there = PlaceActor(nodes, Req(1), With(PlacementStrategy::kNodeAffinity, "b"));
  ASSERT_TRUE(there.ok());
  EXPECT_EQ(there->node_id, "b");  // although a is less loaded

  auto busy = PlaceActor(nodes, Req(2), With(PlacementStrategy::kNodeAffinity, "b"));
  EXPECT_EQ(busy.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(busy.status().message().find("'b'"), std::string::npos);

  auto soft = PlaceActor(nodes, Req(2), With(PlacementStrategy::kNodeAffinity, "b", true));
  ASSERT_TRUE(soft.ok());
  EXPECT_EQ(soft->node_id, "a");

  auto never = PlaceActor(nodes, Req(8), With(PlacementStrategy::kNodeAffinity, "b"));
  EXPECT_EQ(never.status().code(), ErrorCode::kInfeasible);
}

TEST(PlaceActorTest, NodeAffinityUnknownOrDeadNode) {
  std::vector<NodeView> nodes = {Node("a", 4), Node("b", 4)};
  nodes[1].alive = false;
  auto unknown = PlaceActor(nodes, Req(1), With(PlacementStrategy::kNodeAffinity, "zz"));
  EXPECT_EQ(unknown.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(unknown.status().message().find("unknown node 'zz'"), std::string::npos);
  auto dead = PlaceActor(nodes, Req(1), With(PlacementStrategy::kNodeAffinity, "b"));
  EXPECT_EQ(dead.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(dead.status().message().find("dead node 'b'"), std::string::npos);
  auto soft = PlaceActor(nodes, Req(1), With(PlacementStrategy::kNodeAffinity, "b", true));
  ASSERT_TRUE(soft.ok());
  EXPECT_EQ(soft->node_id, "a");
}

TEST(PlaceActorTest, GrantsOnlyRequestedGpuTypeLowestIndicesFirst) {
  std::vector<NodeView> nodes = {
      Node("a", 8, {Gpu(0, "SIM-A"), Gpu(1, "SIM-B"), Gpu(2, "SIM-B"), Gpu(3, "SIM-B")})};
  auto placed = PlaceActor(nodes, Req(1, 2, "SIM-B"), {});
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(placed->gpu_indices, (std::vector<int>{1, 2}));
  auto any = PlaceActor(nodes, Req(1, 2), {});
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->gpu_indices, (std::vector<int>{0, 1}));
}

TEST(PlaceActorTest, GpuMemoryFiltersGpusAndNodes) {
  std::vector<NodeView> nodes = {
      Node("small", 8, {Gpu(0, "X", 24 * kGiB), Gpu(1, "X", 24 * kGiB)}),
      Node("mixed", 8, {Gpu(0, "X", 24 * kGiB), Gpu(1, "X", 80 * kGiB)})};
  auto placed = PlaceActor(nodes, Req(1, 1, "", 40 * kGiB), {});
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(placed->node_id, "mixed");
  EXPECT_EQ(placed->gpu_indices, (std::vector<int>{1}));
  auto two = PlaceActor(nodes, Req(1, 2, "X", 40 * kGiB), {});
  EXPECT_EQ(two.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(two.status().message().find("2 GPU(s) of type 'X' with >= 40GiB (most on one node: 1"),
            std::string::npos)
      << two.status().message();
}

TEST(PlaceActorTest, InfeasibleMessageNamesMissingGpuType) {
  std::vector<NodeView> nodes = {Node("a", 8, {Gpu(0, "SIM-A"), Gpu(1, "SIM-A")}),
                                 Node("b", 8, {Gpu(0, "SIM-B")})};
  auto placed = PlaceActor(nodes, Req(1, 1, "H200"), {});
  EXPECT_EQ(placed.status().code(), ErrorCode::kInfeasible);
  EXPECT_EQ(placed.status().message(),
            "cannot place actor needing cpus=1 gpus=1 gpu_type=H200: no alive node has a GPU of "
            "type 'H200' (cluster has: SIM-A x2, SIM-B x1)");
}

TEST(PlaceActorTest, UnavailableWhenItFitsByTotalButNotNow) {
  std::vector<NodeView> nodes = {Node("a", 2, {Gpu(0, "H200")})};
  auto first = PlaceActor(nodes, Req(1, 1), {});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(Reserve(&nodes[0].available, *first).ok());
  auto second = PlaceActor(nodes, Req(1, 1), {});
  EXPECT_EQ(second.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(second.status().message().find("1 of 1 alive nodes"), std::string::npos);
  auto cpu_only = PlaceActor(nodes, Req(1), {});
  EXPECT_TRUE(cpu_only.ok());
  EXPECT_EQ(PlaceActor(nodes, Req(3), {}).status().code(), ErrorCode::kInfeasible);
}

TEST(PlaceActorTest, DeadNodesAreSkippedAndNotFeasible) {
  std::vector<NodeView> nodes = {Node("a", 2), Node("big", 64, {Gpu(0, "H200")})};
  nodes[1].alive = false;
  auto placed = PlaceActor(nodes, Req(1), With(PlacementStrategy::kSpread));
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(placed->node_id, "a");
  auto gpu = PlaceActor(nodes, Req(1, 1), {});
  EXPECT_EQ(gpu.status().code(), ErrorCode::kInfeasible);  // only the dead node has a GPU
  nodes[0].alive = false;
  auto none = PlaceActor(nodes, Req(1), {});
  EXPECT_EQ(none.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(none.status().message().find("all dead"), std::string::npos);
}

TEST(PlaceActorTest, CustomResourcesPlaceAndExplain) {
  std::vector<NodeView> nodes = {Node("a", 4), Node("b", 4, {}, {{"ssd", 2}})};
  ResourceRequest req = Req(1);
  req.custom = {{"ssd", 1}};
  auto placed = PlaceActor(nodes, req, {});
  ASSERT_TRUE(placed.ok());
  EXPECT_EQ(placed->node_id, "b");
  EXPECT_DOUBLE_EQ(placed->custom.at("ssd"), 1);
  req.custom = {{"ssd", 3}};
  auto too_much = PlaceActor(nodes, req, {});
  EXPECT_EQ(too_much.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(too_much.status().message().find("'ssd'=3 (largest has 2)"), std::string::npos);
}

TEST(PlaceActorTest, RejectsNegativeAmounts) {
  EXPECT_EQ(PlaceActor({Node("a", 4)}, Req(-1), {}).status().code(), ErrorCode::kInvalidArgument);
}

TEST(ReserveReleaseTest, RoundTripRestoresAvailable) {
  NodeView node = Node("a", 4, {Gpu(0, "H200"), Gpu(1, "H200"), Gpu(2, "H200")}, {{"ssd", 1}});
  Allocation a{"a", 1.5, {0, 2}, {{"ssd", 1}}};
  ASSERT_TRUE(Reserve(&node.available, a).ok());
  EXPECT_DOUBLE_EQ(node.available.cpus, 2.5);
  ASSERT_EQ(node.available.gpus.size(), 1u);
  EXPECT_EQ(node.available.gpus[0].index, 1);
  EXPECT_DOUBLE_EQ(node.available.custom.at("ssd"), 0);
  EXPECT_GT(NodeLoad(node), 0.5);

  Status again = Reserve(&node.available, a);  // GPU 0 is taken now
  EXPECT_EQ(again.code(), ErrorCode::kUnavailable);
  EXPECT_DOUBLE_EQ(node.available.cpus, 2.5);  // untouched on failure

  Release(&node.available, node.total, a);
  Release(&node.available, node.total, a);  // twice is harmless
  EXPECT_DOUBLE_EQ(node.available.cpus, 4);
  EXPECT_DOUBLE_EQ(node.available.custom.at("ssd"), 1);
  ASSERT_EQ(node.available.gpus.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(node.available.gpus[i].index, i);
  EXPECT_DOUBLE_EQ(NodeLoad(node), 0);
}

TEST(ReserveReleaseTest, PlacingUntilFullThenReleasing) {
  std::vector<NodeView> nodes = {Node("a", 2, {Gpu(0, "H200"), Gpu(1, "H200")}),
                                 Node("b", 2, {Gpu(0, "H200"), Gpu(1, "H200")})};
  std::vector<Allocation> granted;
  std::set<std::pair<std::string, int>> gpus_seen;
  for (int i = 0; i < 4; ++i) {
    auto a = PlaceActor(nodes, Req(0.5, 1, "H200"), {});
    ASSERT_TRUE(a.ok()) << i << ": " << a.status().ToString();
    for (NodeView& node : nodes) {
      if (node.node_id == a->node_id) {
        ASSERT_TRUE(Reserve(&node.available, *a).ok());
      }
    }
    EXPECT_TRUE(gpus_seen.insert({a->node_id, a->gpu_indices.at(0)}).second);
    granted.push_back(*a);
  }
  EXPECT_EQ(granted[0].node_id, "a");  // default alternates between equally sized nodes
  EXPECT_EQ(granted[1].node_id, "b");
  EXPECT_EQ(PlaceActor(nodes, Req(0.5, 1), {}).status().code(), ErrorCode::kUnavailable);
  Release(&nodes[1].available, nodes[1].total, granted[1]);
  auto back = PlaceActor(nodes, Req(0.5, 1), {});
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->node_id, "b");
  EXPECT_EQ(back->gpu_indices, granted[1].gpu_indices);
}

std::vector<ResourceRequest> Bundles(int count, double cpus, int gpus = 0) {
  return std::vector<ResourceRequest>(count, Req(cpus, gpus));
}

TEST(PlaceGroupTest, StrictPackOnOneNodeOrFails) {
  std::vector<NodeView> nodes = {Node("a", 4, {Gpu(0, "H200")}),
                                 Node("b", 8, {Gpu(0, "H200"), Gpu(1, "H200")})};
  auto group = PlaceGroup(nodes, Bundles(2, 3, 1), GroupStrategy::kStrictPack);
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  ASSERT_EQ(group->size(), 2u);
  EXPECT_EQ((*group)[0].node_id, "b");
  EXPECT_EQ((*group)[1].node_id, "b");
  EXPECT_NE((*group)[0].gpu_indices, (*group)[1].gpu_indices);

  auto too_big = PlaceGroup(nodes, Bundles(3, 3), GroupStrategy::kStrictPack);
  EXPECT_EQ(too_big.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(too_big.status().message().find("STRICT_PACK"), std::string::npos);

  Use(&nodes[1], 4);
  auto busy = PlaceGroup(nodes, Bundles(2, 3, 1), GroupStrategy::kStrictPack);
  EXPECT_EQ(busy.status().code(), ErrorCode::kUnavailable);
}

TEST(PlaceGroupTest, StrictSpreadUsesDistinctNodes) {
  std::vector<NodeView> nodes = {Node("a", 4), Node("b", 4), Node("c", 4)};
  auto group = PlaceGroup(nodes, Bundles(3, 1), GroupStrategy::kStrictSpread);
  ASSERT_TRUE(group.ok());
  std::set<std::string> used;
  for (const Allocation& a : *group) used.insert(a.node_id);
  EXPECT_EQ(used.size(), 3u);

  auto too_many = PlaceGroup(nodes, Bundles(4, 1), GroupStrategy::kStrictSpread);
  EXPECT_EQ(too_many.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(too_many.status().message().find("needs 4 distinct alive nodes, cluster has 3"),
            std::string::npos);
  nodes[2].alive = false;
  EXPECT_EQ(PlaceGroup(nodes, Bundles(3, 1), GroupStrategy::kStrictSpread).status().code(),
            ErrorCode::kInfeasible);
}

TEST(PlaceGroupTest, StrictSpreadFindsMatchingGreedyWouldMiss) {
  // Bundle 0 fits both nodes and "a" is preferred (less loaded); bundle 1 fits only "a".
  std::vector<NodeView> nodes = {Node("a", 8, {Gpu(0, "H200")}), Node("b", 8)};
  Use(&nodes[1], 2);
  std::vector<ResourceRequest> bundles = {Req(1), Req(1, 1, "H200")};
  auto group = PlaceGroup(nodes, bundles, GroupStrategy::kStrictSpread);
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  EXPECT_EQ((*group)[0].node_id, "b");
  EXPECT_EQ((*group)[1].node_id, "a");
  EXPECT_EQ((*group)[1].gpu_indices, (std::vector<int>{0}));
}

TEST(PlaceGroupTest, PackUsesFewestNodes) {
  std::vector<NodeView> nodes = {Node("a", 2), Node("b", 6), Node("c", 3)};
  auto group = PlaceGroup(nodes, Bundles(5, 1), GroupStrategy::kPack);
  ASSERT_TRUE(group.ok());
  for (const Allocation& a : *group) EXPECT_EQ(a.node_id, "b");
  auto split = PlaceGroup(nodes, Bundles(8, 1), GroupStrategy::kPack);
  ASSERT_TRUE(split.ok());
  std::map<std::string, int> per_node;
  for (const Allocation& a : *split) ++per_node[a.node_id];
  EXPECT_EQ(per_node, (std::map<std::string, int>{{"a", 2}, {"b", 6}}));
  EXPECT_EQ(PlaceGroup(nodes, Bundles(12, 1), GroupStrategy::kPack).status().code(),
            ErrorCode::kInfeasible);
}

TEST(PlaceGroupTest, SpreadRoundRobinsAndSharesWhenNeeded) {
  std::vector<NodeView> nodes = {Node("a", 4), Node("b", 1), Node("c", 4)};
  auto group = PlaceGroup(nodes, Bundles(4, 1), GroupStrategy::kSpread);
  ASSERT_TRUE(group.ok());
  std::vector<std::string> order;
  for (const Allocation& a : *group) order.push_back(a.node_id);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "a"}));
  auto full = PlaceGroup(nodes, Bundles(5, 1), GroupStrategy::kSpread);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ((*full)[4].node_id, "c");  // b is full, so the fifth skips it
}

TEST(PlaceGroupTest, AllOrNothingUnavailableAndInfeasibleBundle) {
  std::vector<NodeView> nodes = {Node("a", 2), Node("b", 2)};
  Use(&nodes[0], 2);
  auto partial = PlaceGroup(nodes, Bundles(3, 1), GroupStrategy::kSpread);
  EXPECT_EQ(partial.status().code(), ErrorCode::kUnavailable);
  std::vector<ResourceRequest> bundles = {Req(1), Req(1, 1, "H200")};
  auto gpu = PlaceGroup(nodes, bundles, GroupStrategy::kPack);
  EXPECT_EQ(gpu.status().code(), ErrorCode::kInfeasible);
  EXPECT_NE(gpu.status().message().find("bundle 1 fits no node"), std::string::npos);
  EXPECT_EQ(PlaceGroup(nodes, {}, GroupStrategy::kPack).status().code(),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace tlt
