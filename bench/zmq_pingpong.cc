// zmq_pingpong: the floor for bench/runtime_bench. The same ping-pong as tlt's actor calls,
// over raw ZeroMQ between two processes on TCP loopback, with no runtime on top.
//
//   zmq_pingpong              runs every measurement, prints one JSON object
//   zmq_pingpong --server N   (started by the above) one REP and N ROUTER echo sockets
//   zmq_pingpong --once       (started by the above) answers one request, then exits
//
// Messages are 8 bytes each way (an int64), like tlt's Ping(int64) -> int64. A message
// longer than 8 bytes is answered with its 8-byte length (the 1 MiB and 100 MB tests).
#include <nlohmann/json.hpp>
#include <thread>
#include <zmq.hpp>

#include "bench/bench_common.h"

namespace {

using bench::NowSeconds;

std::string Port(zmq::socket_t& s) {
  std::string ep = s.get(zmq::sockopt::last_endpoint);
  return ep.substr(ep.rfind(':') + 1);
}

zmq::message_t Reply(const zmq::message_t& request) {
  if (request.size() <= 8) return zmq::message_t(request.data(), request.size());
  uint64_t n = request.size();
  return zmq::message_t(&n, sizeof n);
}

int RunServer(int routers) {
  zmq::context_t ctx(1);
  zmq::socket_t rep(ctx, zmq::socket_type::rep);
  rep.bind("tcp://127.0.0.1:0");
  std::vector<zmq::socket_t> router_sockets;
  std::string line = Port(rep);
  for (int i = 0; i < routers; ++i) {
    router_sockets.emplace_back(ctx, zmq::socket_type::router);
    router_sockets.back().bind("tcp://127.0.0.1:0");
    line += " " + Port(router_sockets.back());
  }
  printf("%s\n", line.c_str());
  fflush(stdout);
  std::vector<std::thread> threads;
  for (auto& r : router_sockets) {
    threads.emplace_back([&r] {
      for (;;) {
        zmq::message_t id, body;
        if (!r.recv(id) || !r.recv(body)) return;
        r.send(id, zmq::send_flags::sndmore);
        r.send(Reply(body), zmq::send_flags::none);
      }
    });
  }
  for (;;) {
    zmq::message_t body;
    if (!rep.recv(body)) break;
    rep.send(Reply(body), zmq::send_flags::none);
  }
  return 0;  // killed by the parent
}

int RunOnce() {
  zmq::context_t ctx(1);
  zmq::socket_t rep(ctx, zmq::socket_type::rep);
  rep.bind("tcp://127.0.0.1:0");
  printf("%s\n", Port(rep).c_str());
  fflush(stdout);
  zmq::message_t body;
  if (rep.recv(body)) rep.send(Reply(body), zmq::send_flags::none);
  rep.set(zmq::sockopt::linger, 1000);
  return 0;
}

std::string Endpoint(const std::string& port) { return "tcp://127.0.0.1:" + port; }

// Sync round trips on a connected REQ or DEALER socket; microseconds.
std::vector<double> RoundTrips(zmq::socket_t& s, int samples) {
  std::vector<double> us;
  for (int i = -200; i < samples; ++i) {
    int64_t x = i;
    double t0 = NowSeconds();
    s.send(zmq::buffer(&x, sizeof x), zmq::send_flags::none);
    zmq::message_t reply;
    (void)s.recv(reply);
    if (i >= 0) us.push_back((NowSeconds() - t0) * 1e6);
  }
  return us;
}

// Keeps `window` messages of `bytes` in flight on a DEALER for `seconds`; returns replies.
int64_t Pipelined(zmq::socket_t& dealer, int window, size_t bytes, double seconds,
                  double* elapsed) {
  std::vector<char> payload(std::max<size_t>(bytes, 8), 'x');
  const double start = NowSeconds(), deadline = start + seconds;
  int in_flight = 0;
  int64_t done = 0, sent = 0;
  for (;;) {
    const bool more = sent == 0 || NowSeconds() < deadline;
    while (more && in_flight < window) {
      // Zero-copy send: the payload outlives every message that points at it.
      zmq::message_t m(payload.data(), bytes, nullptr, nullptr);
      dealer.send(m, zmq::send_flags::none);
      ++in_flight;
      ++sent;
    }
    if (in_flight == 0) break;
    zmq::message_t reply;
    (void)dealer.recv(reply);
    --in_flight;
    ++done;
  }
  *elapsed = NowSeconds() - start;
  return done;
}

int RunClient() {
  using nlohmann::json;
  json out;
  bench::ServerProcess server = bench::StartSelf({"--server", std::to_string(bench::kPairs)});
  std::vector<std::string> ports;
  {
    std::string line = server.ReadLine(), p;
    for (char c : line + " ") {
      if (c == ' ') {
        if (!p.empty()) ports.push_back(p);
        p.clear();
      } else
        p.push_back(c);
    }
  }
  if (ports.size() != size_t(bench::kPairs + 1)) {
    fprintf(stderr, "zmq_pingpong: server did not report its ports\n");
    return 1;
  }
  zmq::context_t ctx(1);

  {  // REQ/REP round trip: the floor the issue names.
    zmq::socket_t req(ctx, zmq::socket_type::req);
    req.connect(Endpoint(ports[0]));
    auto us = RoundTrips(req, bench::kRttSamples);
    out["zmq_rtt_p50_us"] = bench::Percentile(us, 50);
    out["zmq_rtt_p99_us"] = bench::Percentile(us, 99);
  }
  {  // DEALER/ROUTER round trip (tlt's socket pattern), one in flight.
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.connect(Endpoint(ports[1]));
    auto us = RoundTrips(dealer, bench::kRttSamples);
    out["zmq_dealer_rtt_p50_us"] = bench::Percentile(us, 50);
    out["zmq_dealer_rtt_p99_us"] = bench::Percentile(us, 99);
  }
  {  // 1:1 async throughput.
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.connect(Endpoint(ports[1]));
    double elapsed;
    int64_t n = Pipelined(dealer, bench::kWindow, 8, bench::kThroughputSeconds, &elapsed);
    out["zmq_calls_per_s"] = n / elapsed;
  }
  {  // n:n: n caller threads, each with its own callee socket; kWindow in flight in all.
    std::vector<int64_t> done(bench::kPairs);
    std::vector<double> elapsed(bench::kPairs);
    std::vector<std::thread> threads;
    for (int i = 0; i < bench::kPairs; ++i) {
      threads.emplace_back([&, i] {
        zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
        dealer.connect(Endpoint(ports[1 + i]));
        done[i] = Pipelined(dealer, bench::kWindow / bench::kPairs, 8, bench::kThroughputSeconds,
                            &elapsed[i]);
      });
    }
    for (auto& t : threads) t.join();
    double total = 0;
    for (int i = 0; i < bench::kPairs; ++i) total += done[i] / elapsed[i];
    out["zmq_nn_calls_per_s"] = total;
  }
  {  // 1 MiB payloads, kLargeWindow in flight, 8-byte replies.
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.connect(Endpoint(ports[1]));
    double elapsed;
    int64_t n = Pipelined(dealer, bench::kLargeWindow, bench::kLargePayload,
                          bench::kThroughputSeconds, &elapsed);
    out["zmq_1mib_gb_per_s"] = double(n) * bench::kLargePayload / elapsed / 1e9;
  }
  {  // 100 MB moved to the other process and acknowledged: the floor for migration.
    zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
    dealer.connect(Endpoint(ports[1]));
    std::vector<double> ms;
    for (int i = 0; i < 3; ++i) {
      double elapsed;
      Pipelined(dealer, 1, size_t(100) << 20, 0, &elapsed);  // no time: sends one
      ms.push_back(elapsed * 1e3);
    }
    out["zmq_100mb_transfer_ms"] = bench::Percentile(ms, 0);
  }
  {  // Process spawn floor: start kCreateCount servers at once, one ping each.
    const double start = NowSeconds();
    std::vector<bench::ServerProcess> procs;
    for (int i = 0; i < bench::kCreateCount; ++i) procs.push_back(bench::StartSelf({"--once"}));
    for (auto& p : procs) {
      zmq::socket_t req(ctx, zmq::socket_type::req);
      req.connect(Endpoint(p.ReadLine()));
      int64_t x = 1;
      req.send(zmq::buffer(&x, sizeof x), zmq::send_flags::none);
      zmq::message_t reply;
      (void)req.recv(reply);
    }
    out["zmq_spawn_per_s"] = bench::kCreateCount / (NowSeconds() - start);
    for (auto& p : procs) p.Stop();
  }
  server.Stop();
  printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--server") return RunServer(argc > 2 ? atoi(argv[2]) : 1);
  if (mode == "--once") return RunOnce();
  return RunClient();
}
