// caf_pingpong: CAF 0.17 remote actors through its middleman (BASP over TCP loopback),
// measured like bench/runtime_bench and bench/zmq_pingpong. Prints one JSON object.
//
//   caf_pingpong            runs every measurement
//   caf_pingpong --server   (started by the above) publishes a ping actor, prints its port,
//                           and hosts remote spawns of "server"
//
// Sync round trips use a blocking scoped_actor (request(...).receive), as a driver thread
// would; the throughput tests use event-based actors that keep a window of requests in
// flight, CAF's fastest path.
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench/bench_common.h"

namespace {

using bench::NowSeconds;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using consume_atom = caf::atom_constant<caf::atom("consume")>;
using go_atom = caf::atom_constant<caf::atom("go")>;
using done_atom = caf::atom_constant<caf::atom("done")>;

caf::behavior Server(caf::event_based_actor*) {
  return {
      [](ping_atom, int64_t x) { return x; },
      [](consume_atom, const std::string& bytes) { return int64_t(bytes.size()); },
  };
}

class Config : public caf::actor_system_config {
 public:
  Config() {
    load<caf::io::middleman>();
    add_actor_type("server", Server);
  }
};

// Keeps `window` requests in flight on `server` until `seconds` pass, then reports
// (done_atom, completed calls, elapsed seconds) to `report_to`.
struct LoadState {
  caf::actor server;
  caf::actor report_to;
  std::string payload;  // empty: ping; else consume(payload)
  double start = 0, deadline = 0;
  int64_t done = 0, failed = 0;
  int in_flight = 0;
};
using Loader = caf::stateful_actor<LoadState>;

void Fire(Loader* self) {
  auto& s = self->state;
  s.in_flight++;
  auto on_reply = [self](int64_t) {
    auto& s = self->state;
    s.in_flight--;
    s.done++;
    if (NowSeconds() < s.deadline) {
      Fire(self);
    } else if (s.in_flight == 0) {
      self->send(s.report_to, done_atom::value, s.done - s.failed, NowSeconds() - s.start);
      self->quit();
    }
  };
  auto on_error = [self](caf::error&) { self->state.failed++; };
  if (s.payload.empty())
    self->request(s.server, caf::infinite, ping_atom::value, int64_t(1)).then(on_reply, on_error);
  else
    self->request(s.server, caf::infinite, consume_atom::value, s.payload).then(on_reply, on_error);
}

caf::behavior Load(Loader* self, caf::actor server, caf::actor report_to, int window,
                   double seconds, std::string payload) {
  self->state.server = std::move(server);
  self->state.report_to = std::move(report_to);
  self->state.payload = std::move(payload);
  return {[=](go_atom) {
    self->state.start = NowSeconds();
    self->state.deadline = self->state.start + seconds;
    for (int i = 0; i < window; ++i) Fire(self);
  }};
}

// Runs one loader per server at once; returns total calls per second.
double RunLoaders(caf::actor_system& sys, const std::vector<caf::actor>& servers, int window,
                  const std::string& payload) {
  caf::scoped_actor self{sys};
  for (const auto& server : servers) {
    auto loader =
        sys.spawn(Load, server, caf::actor(self), window, bench::kThroughputSeconds, payload);
    self->send(loader, go_atom::value);
  }
  double rate = 0;
  for (size_t i = 0; i < servers.size(); ++i)
    self->receive([&](done_atom, int64_t done, double elapsed) { rate += done / elapsed; });
  return rate;
}

int RunServer() {
  Config cfg;
  caf::actor_system sys{cfg};
  auto port = sys.middleman().publish(sys.spawn(Server), 0, "127.0.0.1");
  if (!port) {
    fprintf(stderr, "caf server: publish failed: %s\n", sys.render(port.error()).c_str());
    return 1;
  }
  printf("%u\n", unsigned(*port));
  fflush(stdout);
  for (;;) pause();  // the parent stops it with SIGTERM
}

int RunClient() {
  using nlohmann::json;
  json out;
  bench::ServerProcess server = bench::StartSelf({"--server"});
  const std::string port_text = server.ReadLine();
  if (port_text.empty()) {
    fprintf(stderr, "caf_pingpong: the server reported no port\n");
    return 1;
  }
  const uint16_t port = uint16_t(std::stoi(port_text));
  Config cfg;
  caf::actor_system sys{cfg};
  auto remote = sys.middleman().remote_actor("127.0.0.1", port);
  auto node = sys.middleman().connect("127.0.0.1", port);
  if (!remote || !node) {
    fprintf(stderr, "caf_pingpong: cannot reach the server on port %u\n", unsigned(port));
    server.Stop();
    return 1;
  }

  {  // 1:1 sync round trip from a blocking actor.
    caf::scoped_actor self{sys};
    std::vector<double> us;
    for (int i = -200; i < bench::kRttSamples; ++i) {
      const double t0 = NowSeconds();
      self->request(*remote, caf::infinite, ping_atom::value, int64_t(i))
          .receive([](int64_t) {},
                   [&](caf::error& e) { fprintf(stderr, "%s\n", sys.render(e).c_str()); });
      if (i >= 0) us.push_back((NowSeconds() - t0) * 1e6);
    }
    out["caf_rtt_p50_us"] = bench::Percentile(us, 50);
    out["caf_rtt_p99_us"] = bench::Percentile(us, 99);
  }
  out["caf_calls_per_s"] = RunLoaders(sys, {*remote}, bench::kWindow, "");
  {  // Actor creation: remote spawns on the server node, one after another (blocking API).
    std::vector<caf::actor> spawned;
    const double start = NowSeconds();
    for (int i = 0; i < bench::kCreateCount; ++i) {
      auto a = sys.middleman().remote_spawn<caf::actor>(*node, "server", caf::make_message(),
                                                        std::chrono::seconds(30));
      if (!a) {
        fprintf(stderr, "caf_pingpong: remote spawn failed: %s\n", sys.render(a.error()).c_str());
        break;
      }
      spawned.push_back(*a);
    }
    if (spawned.size() == size_t(bench::kCreateCount))
      out["caf_actors_created_per_s"] = bench::kCreateCount / (NowSeconds() - start);
    // n:n over the first kPairs spawned actors.
    if (spawned.size() >= size_t(bench::kPairs)) {
      std::vector<caf::actor> pairs(spawned.begin(), spawned.begin() + bench::kPairs);
      out["caf_nn_calls_per_s"] = RunLoaders(sys, pairs, bench::kWindow / bench::kPairs, "");
    }
  }
  {  // 1 MiB payloads (CAF serializes the string into its buffers).
    const double rate =
        RunLoaders(sys, {*remote}, bench::kLargeWindow, std::string(bench::kLargePayload, 'x'));
    out["caf_1mib_gb_per_s"] = rate * bench::kLargePayload / 1e9;
  }
  printf("%s\n", out.dump().c_str());
  fflush(stdout);
  server.Stop();
  // The actor system would wait on its remote proxies; the results are out, so leave now.
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--server") return RunServer();
  return RunClient();
}
