// A real cluster started with the `tlt` command: a head and two node agents with simulated
// GPUs of two types, each its own process, on localhost.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "runtime/cluster.h"
#include "tests/runtime/test_actors.h"

namespace tlt {
namespace {

using testing::Counter;
constexpr Millis kWait(20000);

std::string RunCommand(const std::string& command, int* exit_code = nullptr) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int status = p ? pclose(p) : -1;
  if (exit_code) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// Running: exists and is not a zombie (daemons are reparented to init, which may reap late).
bool Running(int pid) {
  if (kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  stat >> pid_field >> comm >> state;
  return state != "Z";
}

int FreePort() {
  static int next = 21000 + (getpid() % 2000) * 4;
  return next++;
}

class MultiNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreePort();
    address_ = "127.0.0.1:" + std::to_string(port_);
    log_dir_ = "/tmp/tlt-test-" + std::to_string(port_);
    int rc = 0;
    std::string out = RunCommand(std::string(TLT_CLI_PATH) + " start --head --port " +
                              std::to_string(port_) + " --simulated-gpus FAST:2 --cpus 4 --log-dir " +
                              log_dir_ + token_flag(), &rc);
    ASSERT_EQ(rc, 0) << out;
    out = RunCommand(std::string(TLT_CLI_PATH) + " start --address " + address_ +
                  " --simulated-gpus SLOW:1 --cpus 4 --log-dir " + log_dir_ + token_flag(), &rc);
    ASSERT_EQ(rc, 0) << out;
    Cluster::Options options;
    options.address = address_;
    options.token = token_;
    auto c = Cluster::Connect(options);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value();
  }
  void TearDown() override {
    auto status = cluster_ ? cluster_->Status() : Result<ClusterStatus>(Internal("none"));
    cluster_.reset();
    int rc = 0;
    std::string out = RunCommand(cli("stop"), &rc);
    EXPECT_EQ(rc, 0) << out;
    // Nothing of the cluster is left running.
    if (status.ok()) {
      for (const auto& n : status->nodes) EXPECT_FALSE(Running(n.pid)) << "node agent " << n.pid;
      for (const auto& a : status->actors)
        if (a.pid) EXPECT_FALSE(Running(a.pid)) << "worker " << a.pid;
      EXPECT_FALSE(Running(status->head_pid)) << "head " << status->head_pid;
    }
  }
  virtual std::string token_flag() const { return ""; }
  std::string cli(const std::string& args) const {
    return std::string(TLT_CLI_PATH) + " " + args + " --address " + address_ + token_flag();
  }
  std::string NodeWith(const std::string& gpu_type) {
    auto status = cluster_->Status();
    for (const auto& n : status->nodes)
      for (const auto& g : n.total.gpus)
        if (g.type == gpu_type) return n.node_id;
    return "";
  }

  int port_ = 0;
  std::string address_, log_dir_, token_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(MultiNodeTest, ActorsLandWhereTheirRequirementsSay) {
  auto status = cluster_->Status();
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(status->nodes.size(), 2u);
  auto slow = cluster_->Create<Counter>(ActorOptions().Gpus(1).GpuType("SLOW"), 0).value();
  auto fast = cluster_->Create<Counter>(ActorOptions().Gpus(2).GpuType("FAST"), 0).value();
  ASSERT_TRUE(cluster_->WaitReady(slow.id(), kWait).ok());
  ASSERT_TRUE(cluster_->WaitReady(fast.id(), kWait).ok());
  EXPECT_EQ(cluster_->GetActor(slow.id())->node_id, NodeWith("SLOW"));
  EXPECT_EQ(cluster_->GetActor(fast.id())->node_id, NodeWith("FAST"));
  std::string fast_indices;  // simulated GPUs follow any real ones the node found
  auto status_now = cluster_->Status();
  for (const auto& n : status_now->nodes)
    for (const auto& g : n.total.gpus)
      if (g.type == "FAST") fast_indices += (fast_indices.empty() ? "" : ",") + std::to_string(g.index);
  EXPECT_EQ(*fast.Call(&Counter::Gpus).Get(kWait), fast_indices);
  auto custom = cluster_->Create<Counter>(ActorOptions().Custom("gpu_type:SLOW", 1).Gpus(0), 0).value();
  ASSERT_TRUE(cluster_->WaitReady(custom.id(), kWait).ok());
  EXPECT_EQ(cluster_->GetActor(custom.id())->node_id, NodeWith("SLOW"));
  // Node affinity.
  auto pinned = cluster_->Create<Counter>(ActorOptions().OnNode(NodeWith("FAST")), 0).value();
  ASSERT_TRUE(cluster_->WaitReady(pinned.id(), kWait).ok());
  EXPECT_EQ(cluster_->GetActor(pinned.id())->node_id, NodeWith("FAST"));
  // `tlt status --json` counts the GPUs in use by type.
  auto j = nlohmann::json::parse(RunCommand(cli("status --json")));
  EXPECT_EQ(j["resources"]["gpus"]["FAST"]["used"], 2);
  EXPECT_EQ(j["resources"]["gpus"]["SLOW"]["used"], 1);
  EXPECT_EQ(j["actors_by_state"]["ALIVE"], 4);
  auto list = nlohmann::json::parse(RunCommand(cli("list actors --state alive --json")));
  EXPECT_EQ(list.size(), 4u);
}

TEST_F(MultiNodeTest, PlacementGroupStrictSpread) {
  ResourceRequest bundle;
  bundle.cpus = 1;
  bundle.gpus = 1;
  auto group = cluster_->CreatePlacementGroup({bundle, bundle}, GroupStrategy::kStrictSpread);
  ASSERT_TRUE(group.ok()) << group.status().ToString();
  auto a = cluster_->Create<Counter>(ActorOptions().InGroup(*group, 0), 0).value();
  auto b = cluster_->Create<Counter>(ActorOptions().InGroup(*group, 1), 0).value();
  ASSERT_TRUE(cluster_->WaitReady(a.id(), kWait).ok());
  ASSERT_TRUE(cluster_->WaitReady(b.id(), kWait).ok());
  EXPECT_NE(cluster_->GetActor(a.id())->node_id, cluster_->GetActor(b.id())->node_id);
  auto three = cluster_->CreatePlacementGroup({bundle, bundle, bundle}, GroupStrategy::kStrictSpread);
  EXPECT_FALSE(three.ok());
}

TEST_F(MultiNodeTest, KilledWorkerComesBackAndTheCliShowsTheRestart) {
  auto h = cluster_->Create<Counter>(ActorOptions().Name("survivor").MaxRestarts(3), 1).value();
  int64_t pid = *h.Call(&Counter::Pid).Get(kWait);
  ASSERT_EQ(kill(pid_t(pid), SIGKILL), 0);
  // A call sent before this driver hears of the death counts as in flight (and with
  // max_task_retries 0 it would fail), so wait for the restart to be reported.
  for (int i = 0; i < 200; ++i) {
    auto info = cluster_->GetActor(h.id());
    if (info.ok() && info->restarts == 1 && info->state == ActorState::kAlive) break;
    std::this_thread::sleep_for(Millis(25));
  }
  auto new_pid = h.Call(&Counter::Pid).Get(kWait);
  ASSERT_TRUE(new_pid.ok()) << new_pid.status().ToString();
  EXPECT_NE(*new_pid, pid);
  auto j = nlohmann::json::parse(RunCommand(cli("get actor survivor --json")));
  EXPECT_EQ(j["restarts"], 1);
  EXPECT_EQ(j["state"], "ALIVE");
  EXPECT_EQ(j["pid"], *new_pid);
  std::string table = RunCommand(cli("get actor survivor"));
  EXPECT_NE(table.find("RESTARTING"), std::string::npos) << table;
}

TEST_F(MultiNodeTest, MigrationAcrossNodesUnderLoad) {
  auto h = cluster_->Create<Counter>(ActorOptions().OnNode(NodeWith("FAST")), 0).value();
  ASSERT_TRUE(h.Call(&Counter::Grow, 8).Get(kWait).ok());
  std::vector<Future<int64_t>> calls;
  std::thread caller([&] {
    for (int i = 0; i < 400; ++i) calls.push_back(h.Call(&Counter::Append, "x", i));
  });
  std::this_thread::sleep_for(Millis(20));
  auto moved = cluster_->Migrate(h.id(), NodeWith("SLOW"));
  caller.join();
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(moved->node_id, NodeWith("SLOW"));
  ASSERT_TRUE(WaitAll(calls, kWait).ok());
  auto log = *h.Call(&Counter::Log).Get(kWait);
  ASSERT_EQ(log.size(), 400u);
  for (int i = 0; i < 400; ++i) ASSERT_EQ(log[i], "x:" + std::to_string(i));
  EXPECT_EQ(*h.Call(&Counter::StateBytes).Get(kWait), 8 << 20);
}

TEST_F(MultiNodeTest, DeadNodeIsNoticedAndItsActorsRestartElsewhere) {
  auto h = cluster_->Create<Counter>(ActorOptions().OnNode(NodeWith("SLOW"), /*soft=*/true)
                                         .MaxRestarts(1), 3).value();
  ASSERT_TRUE(cluster_->WaitReady(h.id(), kWait).ok());
  std::string slow = NodeWith("SLOW");
  int node_pid = 0;
  auto status = cluster_->Status();
  for (const auto& n : status->nodes)
    if (n.node_id == slow) node_pid = n.pid;
  ASSERT_GT(node_pid, 0);
  auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(node_pid, SIGKILL), 0);  // its workers die with it (PDEATHSIG)
  bool dead = false;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(6) && !dead) {
    auto now = cluster_->Status();
    for (const auto& n : now->nodes)
      if (n.node_id == slow && !n.alive) dead = true;
    std::this_thread::sleep_for(Millis(50));
  }
  auto noticed = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
  ASSERT_TRUE(dead);
  EXPECT_LT(noticed.count(), 3800) << "a dead node must be noticed within 3 s (+ poll slack)";
  auto v = h.Call(&Counter::Get).Get(kWait);  // restarted on the FAST node
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(cluster_->GetActor(h.id())->node_id, NodeWith("FAST"));
}

TEST_F(MultiNodeTest, GarbageOnTheHeadPortIsDroppedAndTheClusterKeepsWorking) {
  // Raw TCP garbage (not even ZMTP).
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string junk(4096, '\xee');
  ASSERT_GT(write(fd, junk.data(), junk.size()), 0);
  close(fd);
  // Well-framed ZeroMQ messages whose bytes are not a tlt envelope.
  zmq::socket_t dealer(ZmqContext(), zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect("tcp://" + address_);
  for (const std::string& bad : {std::string("hello"), std::string(16, '\0'), std::string(64, '\xff'),
                                 std::string("\x00\x00\x00\x00\x10\x00\x00\x00", 8)}) {
    dealer.send(zmq::buffer(bad), zmq::send_flags::none);
  }
  std::this_thread::sleep_for(Millis(200));
  auto h = cluster_->Create<Counter>(ActorOptions(), 2).value();
  EXPECT_EQ(*h.Call(&Counter::Add, 2).Get(kWait), 4);
  std::string log = RunCommand("cat " + log_dir_ + "/head.log");
  EXPECT_NE(log.find("malformed"), std::string::npos) << log;
}

class TokenClusterTest : public MultiNodeTest {
 protected:
  void SetUp() override {
    token_ = "s3cret";
    MultiNodeTest::SetUp();
  }
  std::string token_flag() const override { return " --token s3cret"; }
};

TEST_F(TokenClusterTest, WrongTokenIsRefusedAndLogged) {
  Cluster::Options wrong;
  wrong.address = address_;
  wrong.token = "guess";
  wrong.connect_timeout = Millis(3000);
  auto refused = Cluster::Connect(wrong);
  EXPECT_EQ(refused.status().code(), ErrorCode::kUnauthenticated) << refused.status().ToString();
  Cluster::Options none;
  none.address = address_;
  none.connect_timeout = Millis(3000);
  EXPECT_EQ(Cluster::Connect(none).status().code(), ErrorCode::kUnauthenticated);
  // A node agent with the wrong token is refused too and the cluster keeps its 2 nodes.
  int rc = 0;
  RunCommand(std::string(TLT_CLI_PATH) + " start --address " + address_ + " --token nope --log-dir " + log_dir_, &rc);
  EXPECT_NE(rc, 0);
  auto status = cluster_->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->nodes.size(), 2u);
  auto h = cluster_->Create<Counter>(ActorOptions(), 1).value();
  EXPECT_EQ(*h.Call(&Counter::Add, 1).Get(kWait), 2);
  std::string log = RunCommand("cat " + log_dir_ + "/head.log");
  EXPECT_NE(log.find("wrong or missing cluster token"), std::string::npos);
}

TEST(HeadSecurityTest, NonLoopbackBindNeedsAToken) {
  int rc = 0;
  std::string out = RunCommand(std::string(TLT_CLI_PATH) + " start --head --bind 0.0.0.0 --port " +
                        std::to_string(FreePort()), &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("--token"), std::string::npos) << out;
}

TEST(CliTest, BadFlagsNameTheProblem) {
  int rc = 0;
  std::string out = RunCommand(std::string(TLT_CLI_PATH) + " status --adress 1.2.3.4:5", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("unknown flag --adress"), std::string::npos) << out;
  out = RunCommand(std::string(TLT_CLI_PATH) + " start --head --simulated-gpus H200", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("TYPE:COUNT"), std::string::npos) << out;
  out = RunCommand(std::string(TLT_CLI_PATH) + " list actors --state zombie", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("unknown actor state"), std::string::npos) << out;
}

}  // namespace
}  // namespace tlt
