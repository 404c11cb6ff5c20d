// runtime_bench: tlt's actor calls between processes over TCP loopback, measured the same
// way as bench/zmq_pingpong (the floor) and bench/caf_pingpong (CAF 0.17). Prints one
// JSON object. Run it through bench/run_runtime_bench.sh to see all three side by side.
//
// The driver starts an embedded head and node (Cluster::Connect({})); every actor is a
// worker process (this program re-executed), so each call crosses processes.
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "bench/bench_common.h"
#include "runtime/cluster.h"

namespace {

using bench::NowSeconds;

// The callee: Ping answers an int64 (the round trip), Consume takes a large Buffer, and
// Grow gives it state that moves with it (a Buffer, so checkpoints cost no copy here).
class BenchActor {
 public:
  explicit BenchActor(int64_t id) : id_(id) {}
  int64_t Ping(int64_t x) { return x; }
  int64_t Consume(tlt::Buffer b) { return int64_t(b.size()); }
  void Grow(int64_t mb) {
    tlt::Buffer b = tlt::Buffer::Allocate(size_t(mb) << 20);
    std::memset(b.mutable_data(), 'x', b.size());
    state_ = b;
  }
  int64_t StateBytes() const { return int64_t(state_.size()); }
  tlt::Buffer SaveState() { return state_; }
  void LoadState(tlt::Buffer state) { state_ = std::move(state); }

 private:
  int64_t id_;
  tlt::Buffer state_;
};

TLT_ACTOR(BenchActor)
    .Constructor<int64_t>()
    .Method("Ping", &BenchActor::Ping)
    .Method("Consume", &BenchActor::Consume)
    .Method("Grow", &BenchActor::Grow)
    .Method("StateBytes", &BenchActor::StateBytes)
    .Checkpoint(&BenchActor::SaveState, &BenchActor::LoadState);

using Handle = tlt::ActorHandle<BenchActor>;

void Die(const std::string& what, const tlt::Status& st) {
  fprintf(stderr, "runtime_bench: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::exit(1);
}

Handle CreateReady(tlt::Cluster& cluster, int64_t id) {
  auto h = cluster.Create<BenchActor>(tlt::ActorOptions(), id);
  if (!h.ok()) Die("create", h.status());
  auto ready = cluster.WaitReady(h->id());
  if (!ready.ok()) Die("wait ready", ready.status());
  return *h;
}

// Keeps `window` calls made by `call()` in flight for `seconds`; returns completed calls.
template <typename MakeCall>
int64_t Pipelined(int window, double seconds, MakeCall call, double* elapsed) {
  bench::Window w(window);
  std::atomic<int64_t> done{0}, failed{0};
  const double start = NowSeconds(), deadline = start + seconds;
  while (NowSeconds() < deadline) {
    w.Acquire();
    call().Then([&](const auto& r) {
      if (!r.ok()) failed++;
      done++;
      w.Release();
    });
  }
  w.Drain();
  *elapsed = NowSeconds() - start;
  if (failed) fprintf(stderr, "runtime_bench: %lld calls failed\n", (long long)failed.load());
  return done - failed;
}

}  // namespace

int main(int argc, char** argv) {
  tlt::Init(argc, argv);
  const std::string only = argc > 2 && std::string(argv[1]) == "--only" ? argv[2] : "";
  auto want = [&](const char* test) { return only.empty() || only == test; };
  using nlohmann::json;
  json out;
  tlt::Cluster::Options options;
  options.cpus = 256;  // actors are mostly idle here; do not let 2 cores cap their number
  auto cluster_or = tlt::Cluster::Connect(options);
  if (!cluster_or.ok()) Die("connect", cluster_or.status());
  tlt::Cluster& cluster = **cluster_or;

  // 1:1 sync round trip, first with one actor (the client has one worker socket), then
  // again once the n:n actors exist (the client's loop then watches kPairs sockets).
  auto round_trips = [](const Handle& h) {
    std::vector<double> us;
    for (int i = -200; i < bench::kRttSamples; ++i) {
      const double t0 = NowSeconds();
      auto r = h.Call(&BenchActor::Ping, int64_t(i)).Get();
      if (!r.ok()) Die("ping", r.status());
      if (i >= 0) us.push_back((NowSeconds() - t0) * 1e6);
    }
    return us;
  };
  std::vector<Handle> actors{CreateReady(cluster, 0)};
  const Handle a = actors[0];
  if (want("rtt")) {
    auto us = round_trips(a);
    out["tlt_rtt_p50_us"] = bench::Percentile(us, 50);
    out["tlt_rtt_p99_us"] = bench::Percentile(us, 99);
  }
  for (int i = 1; i < bench::kPairs; ++i) actors.push_back(CreateReady(cluster, i));
  for (int i = 1; i < bench::kPairs; ++i) (void)actors[i].Call(&BenchActor::Ping, int64_t(0)).Get();
  if (want("rtt")) {
    auto us = round_trips(a);
    static_assert(bench::kPairs == 4, "rename the key below");
    out["tlt_rtt_p50_us_with_4_actors"] = bench::Percentile(us, 50);
  }
  if (want("async")) {  // 1:1 async throughput, kWindow in flight.
    double elapsed;
    int64_t n = Pipelined(
        bench::kWindow, bench::kThroughputSeconds,
        [&] { return a.Call(&BenchActor::Ping, int64_t(1)); }, &elapsed);
    out["tlt_calls_per_s"] = n / elapsed;
  }
  if (want("nn")) {  // n:n: n caller threads, each on its own actor; kWindow in flight in all.
    std::vector<int64_t> done(bench::kPairs);
    std::vector<double> elapsed(bench::kPairs);
    std::vector<std::thread> threads;
    for (int i = 0; i < bench::kPairs; ++i) {
      threads.emplace_back([&, i] {
        done[i] = Pipelined(
            bench::kWindow / bench::kPairs, bench::kThroughputSeconds,
            [&] { return actors[i].Call(&BenchActor::Ping, int64_t(1)); }, &elapsed[i]);
      });
    }
    for (auto& t : threads) t.join();
    double total = 0;
    for (int i = 0; i < bench::kPairs; ++i) total += done[i] / elapsed[i];
    out["tlt_nn_calls_per_s"] = total;
  }
  if (want("1mib")) {  // 1 MiB arguments, kLargeWindow in flight (the Buffer travels as a zero-copy
                       // frame).
    tlt::Buffer payload = tlt::Buffer::Allocate(bench::kLargePayload);
    double elapsed;
    int64_t n = Pipelined(
        bench::kLargeWindow, bench::kThroughputSeconds,
        [&] { return a.Call(&BenchActor::Consume, payload); }, &elapsed);
    out["tlt_1mib_gb_per_s"] = double(n) * bench::kLargePayload / elapsed / 1e9;
  }
  if (want("create")) {  // Actor creation: kCreateCount at once, until all are ALIVE (a process
                         // each).
    const double start = NowSeconds();
    std::vector<std::string> ids;
    for (int i = 0; i < bench::kCreateCount; ++i) {
      auto h = cluster.Create<BenchActor>(tlt::ActorOptions(), int64_t(100 + i));
      if (!h.ok()) Die("create", h.status());
      ids.push_back(h->id());
    }
    for (const auto& id : ids) {
      auto r = cluster.WaitReady(id);
      if (!r.ok()) Die("wait ready", r.status());
    }
    out["tlt_actors_created_per_s"] = bench::kCreateCount / (NowSeconds() - start);
    for (const auto& id : ids) (void)cluster.Kill(id);
  }
  if (want("migrate")) {  // Migration of an actor holding 100 MB of state.
    Handle big = CreateReady(cluster, 1000);
    auto grown = big.Call(&BenchActor::Grow, int64_t(100)).Get();
    if (!grown.ok()) Die("grow", grown.status());
    const double start = NowSeconds();
    auto moved = cluster.Migrate(big.id());
    if (!moved.ok()) Die("migrate", moved.status());
    const double migrated = NowSeconds();
    auto bytes = big.Call(&BenchActor::StateBytes).Get();
    if (!bytes.ok() || *bytes != int64_t(100) << 20) Die("state after migration", bytes.status());
    out["tlt_migrate_100mb_ms"] = (migrated - start) * 1e3;
    out["tlt_migrate_first_call_ms"] = (NowSeconds() - migrated) * 1e3;
    // The controller's event says how much of it was the state transfer itself.
    auto info = cluster.GetActor(big.id(), /*with_events=*/true);
    if (info.ok()) {
      std::smatch m;
      static const std::regex transfer("state transfer ([0-9]+) ms");
      for (const auto& e : info->events)
        if (e.kind == "MIGRATED" && std::regex_search(e.detail, m, transfer))
          out["tlt_migrate_state_transfer_ms"] = std::stod(m[1]);
    }
  }
  printf("%s\n", out.dump().c_str());
  fflush(stdout);
  return 0;
}
