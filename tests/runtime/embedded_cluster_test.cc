// A driver with an embedded head and node: actors run in real worker processes.
#include <gtest/gtest.h>
#include <signal.h>

#include <set>
#include <thread>

#include "runtime/cluster.h"
#include "tests/runtime/test_actors.h"

namespace tlt {
namespace {

using testing::Broken;
using testing::Counter;
constexpr Millis kWait(20000);

class EmbeddedClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Cluster::Options options;
    options.simulated_gpus = "SIM:2";
    options.cpus = 8;
    auto c = Cluster::Connect(options);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value();
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(EmbeddedClusterTest, CreateAndCall) {
  auto h = cluster_->Create<Counter>(ActorOptions(), 10);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto v = h->Call(&Counter::Add, 5).Get(kWait);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, 15);
  EXPECT_EQ(*h->Call(&Counter::Get).Get(kWait), 15);
  EXPECT_EQ(*h->Call(&Counter::Echo, "hi").Get(kWait), "hi");
  // The actor lives in another process.
  EXPECT_NE(*h->Call(&Counter::Pid).Get(kWait), int64_t(getpid()));
  Buffer big = Buffer::Allocate(3 << 20);
  big.mutable_data()[1 << 20] = 42;
  auto echoed = h->Call(&Counter::EchoBytes, big).Get(kWait);
  ASSERT_TRUE(echoed.ok());
  EXPECT_EQ(echoed->size(), big.size());
  EXPECT_EQ(echoed->data()[1 << 20], 42);
}

TEST_F(EmbeddedClusterTest, ErrorsComeBackAndTheWorkerKeepsServing) {
  auto h = cluster_->Create<Counter>(ActorOptions(), 0).value();
  auto pid = *h.Call(&Counter::Pid).Get(kWait);
  auto thrown = h.Call(&Counter::Throw, "bad things").Get(kWait);
  EXPECT_EQ(thrown.status().code(), ErrorCode::kActorError);
  EXPECT_NE(thrown.status().message().find("bad things"), std::string::npos);
  EXPECT_EQ(h.Call(&Counter::Fail, "nope").Get(kWait).status().code(), ErrorCode::kInvalidArgument);
  // A call with the wrong argument types, sent below the typed API.
  auto raw = cluster_->client()->Call(h.id(), "Add", EncodeTuple(std::string("x"))).Get(kWait);
  EXPECT_EQ(raw.status().code(), ErrorCode::kCodecMismatch);
  auto unknown = cluster_->client()->Call(h.id(), "NoSuchMethod", EncodeTuple()).Get(kWait);
  EXPECT_EQ(unknown.status().code(), ErrorCode::kUnknownMethod);
  EXPECT_EQ(*h.Call(&Counter::Add, 1).Get(kWait), 1);
  EXPECT_EQ(*h.Call(&Counter::Pid).Get(kWait), pid);  // same worker, still alive
}

TEST_F(EmbeddedClusterTest, CallsFromOneCallerRunInOrder) {
  auto h = cluster_->Create<Counter>(ActorOptions(), 0).value();
  std::vector<Future<int64_t>> futures;
  for (int i = 0; i < 500; ++i) futures.push_back(h.Call(&Counter::Append, "me", i));
  ASSERT_TRUE(WaitAll(futures, kWait).ok());
  auto log = *h.Call(&Counter::Log).Get(kWait);
  ASSERT_EQ(log.size(), 500u);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(log[i], "me:" + std::to_string(i));
}

TEST_F(EmbeddedClusterTest, NamedActors) {
  auto h = cluster_->Create<Counter>(ActorOptions().Name("counter"), 7).value();
  ASSERT_TRUE(cluster_->WaitReady(h.id(), kWait).ok());
  auto again = cluster_->Get<Counter>("counter");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), h.id());
  EXPECT_EQ(*again->Call(&Counter::Get).Get(kWait), 7);
  auto dup = cluster_->Create<Counter>(ActorOptions().Name("counter"), 1);
  EXPECT_EQ(dup.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(cluster_->Get<Counter>("missing").status().code(), ErrorCode::kNotFound);
}

TEST_F(EmbeddedClusterTest, ConstructorFailureKillsTheActorWithACause) {
  auto h = cluster_->Create<Broken>(ActorOptions(), "no such model");
  ASSERT_TRUE(h.ok());
  auto ready = cluster_->WaitReady(h->id(), kWait);
  EXPECT_EQ(ready.status().code(), ErrorCode::kActorDied);
  EXPECT_NE(ready.status().message().find("no such model"), std::string::npos);
  auto call = h->Call(&Broken::Get).Get(kWait);
  EXPECT_EQ(call.status().code(), ErrorCode::kActorDied);
}

TEST_F(EmbeddedClusterTest, GpuActorsGetTheirGpus) {
  // Simulated GPUs come after any real ones the node found (on the GPU machine: index 0).
  std::set<std::string> sim_indices;
  auto status = cluster_->Status();
  ASSERT_TRUE(status.ok());
  for (const auto& g : status->nodes.at(0).total.gpus)
    if (g.type == "SIM") sim_indices.insert(std::to_string(g.index));
  ASSERT_EQ(sim_indices.size(), 2u);
  auto a = cluster_->Create<Counter>(ActorOptions().Gpus(1).GpuType("SIM"), 0).value();
  auto b = cluster_->Create<Counter>(ActorOptions().Gpus(1).GpuType("SIM"), 0).value();
  auto ga = *a.Call(&Counter::Gpus).Get(kWait);
  auto gb = *b.Call(&Counter::Gpus).Get(kWait);
  EXPECT_NE(ga, gb);
  EXPECT_TRUE(sim_indices.count(ga) && sim_indices.count(gb)) << ga << " " << gb;
  // A third GPU actor waits for a free GPU ...
  auto c = cluster_->Create<Counter>(ActorOptions().Gpus(1).GpuType("SIM"), 0).value();
  auto info = cluster_->GetActor(c.id());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, ActorState::kPendingCreation);
  // ... and gets one when another is killed.
  ASSERT_TRUE(cluster_->Kill(a.id()).ok());
  EXPECT_EQ(*c.Call(&Counter::Gpus).Get(kWait), ga);
  // A request no node can ever satisfy is refused with the reason.
  auto big = cluster_->Create<Counter>(ActorOptions().Gpus(1).GpuType("NO-SUCH-GPU"), 0).value();
  auto ready = cluster_->WaitReady(big.id(), kWait);
  EXPECT_EQ(ready.status().code(), ErrorCode::kActorDied);
  EXPECT_NE(ready.status().message().find("NO-SUCH-GPU"), std::string::npos) << ready.status().message();
}

TEST_F(EmbeddedClusterTest, KilledWorkerRestartsAndRetriesCalls) {
  auto h = cluster_->Create<Counter>(ActorOptions().MaxRestarts(2).MaxTaskRetries(1), 5).value();
  int64_t pid = *h.Call(&Counter::Pid).Get(kWait);
  ASSERT_EQ(kill(pid_t(pid), SIGKILL), 0);
  // The next call waits for the restart, then runs on the new worker.
  auto new_pid = h.Call(&Counter::Pid).Get(kWait);
  ASSERT_TRUE(new_pid.ok()) << new_pid.status().ToString();
  EXPECT_NE(*new_pid, pid);
  EXPECT_EQ(*h.Call(&Counter::Get).Get(kWait), 5);  // fresh state from the constructor
  auto info = cluster_->GetActor(h.id(), true).value();
  EXPECT_EQ(info.restarts, 1);
  EXPECT_EQ(info.state, ActorState::kAlive);
  bool saw_restarting = false;
  for (const auto& e : info.events) saw_restarting |= e.kind == "RESTARTING";
  EXPECT_TRUE(saw_restarting);
  // A call in flight when the worker dies is retried (max_task_retries=1).
  auto sleeping = h.Call(&Counter::Sleep, 3000);
  std::this_thread::sleep_for(Millis(300));
  ASSERT_EQ(kill(pid_t(*new_pid), SIGKILL), 0);
  auto retried = sleeping.Get(kWait);
  EXPECT_TRUE(retried.ok()) << retried.status().ToString();
  EXPECT_EQ(cluster_->GetActor(h.id()).value().restarts, 2);
  // Out of restarts: DEAD with a cause, and calls fail with it.
  int64_t last = *h.Call(&Counter::Pid).Get(kWait);
  ASSERT_EQ(kill(pid_t(last), SIGKILL), 0);
  auto dead = h.Call(&Counter::Get).Get(kWait);
  EXPECT_EQ(dead.status().code(), ErrorCode::kActorDied);
  auto final_info = cluster_->GetActor(h.id()).value();
  EXPECT_EQ(final_info.state, ActorState::kDead);
  EXPECT_NE(final_info.death_cause.find("signal 9"), std::string::npos) << final_info.death_cause;
}

TEST_F(EmbeddedClusterTest, CallInFlightWithoutRetriesFails) {
  auto h = cluster_->Create<Counter>(ActorOptions().MaxRestarts(1), 0).value();
  int64_t pid = *h.Call(&Counter::Pid).Get(kWait);
  auto sleeping = h.Call(&Counter::Sleep, 5000);
  std::this_thread::sleep_for(Millis(300));
  kill(pid_t(pid), SIGKILL);
  auto r = sleeping.Get(kWait);
  EXPECT_EQ(r.status().code(), ErrorCode::kActorDied);
  EXPECT_NE(r.status().message().find("max_task_retries"), std::string::npos);
  EXPECT_TRUE(h.Call(&Counter::Get).Get(kWait).ok());  // restarted
}

TEST_F(EmbeddedClusterTest, MigrationKeepsStateAndHandles) {
  auto h = cluster_->Create<Counter>(ActorOptions(), 1).value();
  ASSERT_EQ(*h.Call(&Counter::Add, 99).Get(kWait), 100);
  int64_t pid = *h.Call(&Counter::Pid).Get(kWait);
  auto moved = cluster_->Migrate(h.id());
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(moved->state, ActorState::kAlive);
  EXPECT_NE(*h.Call(&Counter::Pid).Get(kWait), pid);
  EXPECT_EQ(*h.Call(&Counter::Get).Get(kWait), 100);
  auto broken = cluster_->Create<Broken>(ActorOptions(), "x").value();
  (void)cluster_->WaitReady(broken.id(), kWait);
  EXPECT_FALSE(cluster_->Migrate(broken.id()).ok());
}

TEST_F(EmbeddedClusterTest, MigrationUnderConcurrentCallsIsExactlyOnceInOrder) {
  auto h = cluster_->Create<Counter>(ActorOptions(), 0).value();
  ASSERT_TRUE(cluster_->WaitReady(h.id(), kWait).ok());
  constexpr int kThreads = 3, kCalls = 300;
  std::vector<std::thread> callers;
  std::vector<std::vector<Future<int64_t>>> futures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        futures[t].push_back(h.Call(&Counter::Append, "t" + std::to_string(t), i));
        if (i % 50 == 0) std::this_thread::sleep_for(Millis(5));
      }
    });
  }
  for (int m = 0; m < 3; ++m) {
    std::this_thread::sleep_for(Millis(40));
    auto moved = cluster_->Migrate(h.id());
    ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  }
  for (auto& c : callers) c.join();
  for (auto& f : futures) {
    Status st = WaitAll(f, kWait);
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (auto& x : f) ASSERT_TRUE(x.Get().ok()) << x.Get().status().ToString();
  }
  auto log = *h.Call(&Counter::Log).Get(kWait);
  ASSERT_EQ(log.size(), size_t(kThreads * kCalls));  // nothing lost, nothing duplicated
  // Each thread's calls are one caller's calls (one client): their global order is the
  // submission order, so per-thread subsequences must be 0..kCalls-1.
  std::vector<int> next(kThreads, 0);
  for (const auto& entry : log) {
    int t = entry[1] - '0';
    int i = std::stoi(entry.substr(entry.find(':') + 1));
    EXPECT_EQ(i, next[t]) << "thread " << t << " out of order";
    next[t] = i + 1;
  }
  auto info = cluster_->GetActor(h.id(), true).value();
  int migrations = 0;
  for (const auto& e : info.events) migrations += e.kind == "MIGRATED";
  EXPECT_EQ(migrations, 3);
}

}  // namespace
}  // namespace tlt
