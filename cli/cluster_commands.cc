// `tlt start`, `tlt stop`, `tlt status`, `tlt list actors`, `tlt get actor`, and the
// hidden daemon bodies `tlt _head` / `tlt _node` that `tlt start` launches.
#include "cli/cluster_commands.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glog/logging.h>

#include <climits>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/format.h"
#include "runtime/cluster.h"
#include "runtime/controller.h"
#include "runtime/node_agent.h"

namespace tlt::cli {

namespace {

constexpr int kDefaultPort = 7480;
const char* kStateDir = "/tmp/tlt";

// The address of the last cluster started here, so `tlt status` works without --address.
std::string DefaultAddress() {
  std::ifstream in(std::string(kStateDir) + "/address");
  std::string address;
  if (in >> address) return address;
  return "127.0.0.1:" + std::to_string(kDefaultPort);
}

// Runs this program again as a daemon (new session, output to `log`), returns its pid.
Result<pid_t> SpawnDaemon(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  std::string self = CurrentExecutable();
  argv.push_back(self.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return IoError("fork failed");
  if (pid == 0) {
    setsid();
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

Result<std::unique_ptr<Cluster>> ConnectTo(const Flags& flags) {
  Cluster::Options options;
  options.address = flags.Get("address", DefaultAddress());
  options.token = flags.Get("token");
  options.connect_timeout = Millis(3000);
  return Cluster::Connect(options);
}

std::string GpuSummary(const NodeResources& r) {
  std::map<std::string, int> by_type;
  for (const auto& g : r.gpus) by_type[g.type]++;
  std::string s;
  for (const auto& [t, n] : by_type) s += (s.empty() ? "" : ",") + t + "x" + std::to_string(n);
  return s.empty() ? "-" : s;
}

bool IsZombie(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  stat >> pid_field >> comm >> state;
  return state == "Z";
}

int Fail(const Status& st) {
  std::cerr << "tlt: " << st.ToString() << "\n";
  return 1;
}

}  // namespace

int HeadMain(const Flags& flags) {
  EventLoop loop;
  ControllerOptions options;
  options.bind_host = flags.Get("bind", "127.0.0.1");
  options.port = int(flags.GetNumber("port", kDefaultPort).value_or(kDefaultPort));
  options.token = flags.Get("token");
  options.heartbeat_timeout_ms =
      int64_t(flags.GetNumber("heartbeat-timeout-ms", 3000).value_or(3000));
  Controller controller(options, &loop, SystemClock::Get());
  Status st = controller.Start();
  if (!st.ok()) return Fail(st);
  loop.Run();
  LOG(INFO) << "head stopped";
  return 0;
}

int NodeMain(const Flags& flags) {
  EventLoop loop;
  NodeAgentOptions options;
  options.head_endpoint = ToZmqEndpoint(flags.Get("address"));
  options.bind_host = flags.Get("bind", "127.0.0.1");
  options.token = flags.Get("token");
  options.simulated_gpus = flags.Get("simulated-gpus");
  options.cpus = flags.GetNumber("cpus", 0).value_or(0);
  options.heartbeat_ms = int(flags.GetNumber("heartbeat-ms", 500).value_or(500));
  options.log_dir = flags.Get("log-dir", kStateDir);
  NodeAgent node(options, &loop);
  Status st = node.Start();
  if (!st.ok()) return Fail(st);
  loop.Run();
  return 0;
}

int StartCommand(const Flags& flags) {
  Status st = flags.Allow({"head", "address", "port", "bind", "token", "simulated-gpus", "cpus",
                           "log-dir", "heartbeat-timeout-ms"});
  if (!st.ok()) return Fail(st);
  if (flags.Has("head") == flags.Has("address"))
    return Fail(InvalidArgument("say either --head (start a cluster) or --address HOST:PORT "
                                "(join one)"));
  auto sim = ParseSimulatedGpus(flags.Get("simulated-gpus"), 0);
  if (!sim.ok()) return Fail(sim.status());
  std::string log_dir = flags.Get("log-dir", kStateDir);
  mkdir(kStateDir, 0755);
  mkdir(log_dir.c_str(), 0755);
  std::string bind = flags.Get("bind", "127.0.0.1");
  std::string token = flags.Get("token");
  std::string address = flags.Get("address");
  if (flags.Has("head")) {
    if (bind != "127.0.0.1" && bind != "localhost" && token.empty())
      return Fail(InvalidArgument("binding the head to " + bind +
                                  " needs --token T; nodes and drivers must pass the same token"));
    int port = int(flags.GetNumber("port", kDefaultPort).value_or(kDefaultPort));
    std::vector<std::string> args = {"_head", "--bind", bind, "--port", std::to_string(port),
                                     "--heartbeat-timeout-ms",
                                     flags.Get("heartbeat-timeout-ms", "3000")};
    if (!token.empty()) { args.push_back("--token"); args.push_back(token); }
    auto pid = SpawnDaemon(args, log_dir + "/head.log");
    if (!pid.ok()) return Fail(pid.status());
    address = (bind == "0.0.0.0" ? "127.0.0.1" : bind) + ":" + std::to_string(port);
    // Wait until it answers (or died: then show why).
    Cluster::Options probe;
    probe.address = address;
    probe.token = token;
    probe.connect_timeout = Millis(5000);
    auto cluster = Cluster::Connect(probe);
    if (!cluster.ok()) {
      std::cerr << "tlt: the head did not come up; see " << log_dir << "/head.log\n";
      return Fail(cluster.status());
    }
    std::ofstream(std::string(kStateDir) + "/address") << address << "\n";
  }
  std::vector<std::string> args = {"_node", "--address", address, "--bind", bind, "--log-dir", log_dir};
  if (!token.empty()) { args.push_back("--token"); args.push_back(token); }
  if (flags.Has("simulated-gpus")) { args.push_back("--simulated-gpus"); args.push_back(flags.Get("simulated-gpus")); }
  if (flags.Has("cpus")) { args.push_back("--cpus"); args.push_back(flags.Get("cpus")); }
  auto node_pid = SpawnDaemon(args, log_dir + "/node-" + std::to_string(getpid()) + ".log");
  if (!node_pid.ok()) return Fail(node_pid.status());
  // Wait for the node to register.
  Cluster::Options options;
  options.address = address;
  options.token = token;
  auto cluster = Cluster::Connect(options);
  if (!cluster.ok()) return Fail(cluster.status());
  for (int i = 0; i < 100; ++i) {
    auto status = (*cluster)->Status();
    if (status.ok())
      for (const auto& n : status->nodes)
        if (n.pid == *node_pid && n.alive) {
          std::cout << (flags.Has("head") ? "started head at " : "joined ") << address
                    << "; node " << n.node_id << " with " << n.total.cpus << " CPUs, GPUs "
                    << GpuSummary(n.total) << "\nlogs: " << log_dir << "\n";
          return 0;
        }
    std::this_thread::sleep_for(Millis(50));
  }
  return Fail(Unavailable("the node did not register within 5 s; see " + log_dir));
}

int StopCommand(const Flags& flags) {
  Status st = flags.Allow({"address", "token"});
  if (!st.ok()) return Fail(st);
  auto cluster = ConnectTo(flags);
  if (!cluster.ok()) return Fail(cluster.status());
  auto status = (*cluster)->Status();
  std::vector<int> pids;  // local processes of the cluster: wait until each has exited
  if (status.ok()) {
    for (const auto& n : status->nodes) if (n.alive) pids.push_back(n.pid);
    for (const auto& a : status->actors) if (a.pid) pids.push_back(a.pid);
    if (status->head_pid) pids.push_back(status->head_pid);
  }
  st = (*cluster)->Shutdown();
  if (!st.ok()) return Fail(st);
  cluster->reset();
  // Wait for the local node agents to exit (they kill their workers first).
  // Processes on other hosts are not visible here; those on this one must be gone.
  for (int i = 0; i < 200; ++i) {
    bool any = false;
    for (int pid : pids) any |= kill(pid, 0) == 0 && !IsZombie(pid);
    if (!any) {
      std::cout << "stopped the cluster at " << flags.Get("address", DefaultAddress()) << "\n";
      return 0;
    }
    std::this_thread::sleep_for(Millis(50));
  }
  return Fail(Unavailable("some processes of the cluster were still running after 10 s"));
}

int StatusCommand(const Flags& flags) {
  Status st = flags.Allow({"address", "token", "json"});
  if (!st.ok()) return Fail(st);
  auto cluster = ConnectTo(flags);
  if (!cluster.ok()) return Fail(cluster.status());
  auto status = (*cluster)->Status();
  if (!status.ok()) return Fail(status.status());
  std::map<std::string, int> by_state;
  for (const auto& a : status->actors) by_state[ActorStateName(a.state)]++;
  if (flags.Has("json")) {
    nlohmann::json j;
    j["address"] = flags.Get("address", DefaultAddress());
    j["nodes"] = nlohmann::json::array();
    for (const auto& n : status->nodes) j["nodes"].push_back(ToJson(n));
    j["actors_by_state"] = by_state;
    // Resources used/total by type, over alive nodes.
    nlohmann::json res;
    double cpus = 0, cpus_free = 0;
    std::map<std::string, std::pair<int, int>> gpus;  // type -> (used, total)
    for (const auto& n : status->nodes) {
      if (!n.alive) continue;
      cpus += n.total.cpus;
      cpus_free += n.available.cpus;
      for (const auto& g : n.total.gpus) gpus[g.type].second++;
      for (const auto& g : n.total.gpus) {
        bool free = false;
        for (const auto& f : n.available.gpus) free |= f.index == g.index;
        if (!free) gpus[g.type].first++;
      }
    }
    res["cpus"] = {{"used", cpus - cpus_free}, {"total", cpus}};
    for (const auto& [t, ut] : gpus) res["gpus"][t] = {{"used", ut.first}, {"total", ut.second}};
    j["resources"] = res;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : status->nodes) {
    char cpu[64];
    snprintf(cpu, sizeof cpu, "%g/%g", n.total.cpus - n.available.cpus, n.total.cpus);
    std::string gpu_used = std::to_string(n.total.gpus.size() - n.available.gpus.size()) + "/" +
                           std::to_string(n.total.gpus.size());
    rows.push_back({n.node_id, n.address, n.alive ? "ALIVE" : "DEAD", cpu, gpu_used,
                    GpuSummary(n.total), std::to_string(n.num_actors)});
  }
  std::cout << "cluster at " << flags.Get("address", DefaultAddress()) << "\n\n"
            << Table({"NODE", "ADDRESS", "STATE", "CPU used/total", "GPU used/total", "GPU TYPES",
                      "ACTORS"}, rows);
  std::cout << "\nactors:";
  if (by_state.empty()) std::cout << " none";
  for (const auto& [s, n] : by_state) std::cout << " " << s << "=" << n;
  std::cout << "\n";
  return 0;
}

int ListActorsCommand(const Flags& flags) {
  Status st = flags.Allow({"address", "token", "json", "state"});
  if (!st.ok()) return Fail(st);
  std::optional<ActorState> state;
  if (flags.Has("state")) {
    auto parsed = ParseActorState(flags.Get("state"));
    if (!parsed.ok()) return Fail(parsed.status());
    state = *parsed;
  }
  auto cluster = ConnectTo(flags);
  if (!cluster.ok()) return Fail(cluster.status());
  auto actors = (*cluster)->ListActors(state);
  if (!actors.ok()) return Fail(actors.status());
  if (flags.Has("json")) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& a : *actors) j.push_back(ToJson(a));
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : *actors)
    rows.push_back({a.actor_id, a.name.empty() ? "-" : a.name, a.class_name, ActorStateName(a.state),
                    a.node_id.empty() ? "-" : a.node_id, a.pid ? std::to_string(a.pid) : "-",
                    std::to_string(a.restarts)});
  std::cout << Table({"ACTOR", "NAME", "CLASS", "STATE", "NODE", "PID", "RESTARTS"}, rows);
  return 0;
}

int GetActorCommand(const Flags& flags) {
  Status st = flags.Allow({"address", "token", "json"});
  if (!st.ok()) return Fail(st);
  if (flags.words().size() != 3)
    return Fail(InvalidArgument("usage: tlt get actor ID|NAME [--json]"));
  auto cluster = ConnectTo(flags);
  if (!cluster.ok()) return Fail(cluster.status());
  auto actor = (*cluster)->GetActor(flags.words()[2], /*with_events=*/true);
  if (!actor.ok()) return Fail(actor.status());
  const ActorInfo& a = *actor;
  if (flags.Has("json")) {
    std::cout << ToJson(a).dump(2) << "\n";
    return 0;
  }
  std::string gpus;
  for (int g : a.gpu_indices) gpus += (gpus.empty() ? "" : ",") + std::to_string(g);
  std::cout << Table({"FIELD", "VALUE"},
                     {{"actor", a.actor_id}, {"name", a.name.empty() ? "-" : a.name},
                      {"class", a.class_name}, {"state", ActorStateName(a.state)},
                      {"node", a.node_id.empty() ? "-" : a.node_id},
                      {"worker pid", a.pid ? std::to_string(a.pid) : "-"},
                      {"gpus", gpus.empty() ? "-" : gpus},
                      {"restarts", std::to_string(a.restarts) + " of " +
                                       (a.max_restarts < 0 ? "unlimited" : std::to_string(a.max_restarts))},
                      {"death cause", a.death_cause.empty() ? "-" : a.death_cause}});
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : a.events) rows.push_back({FormatTimeMs(e.time_ms), e.kind, e.detail});
  std::cout << "\nrecent events:\n" << Table({"TIME (UTC)", "EVENT", "DETAIL"}, rows);
  return 0;
}

}  // namespace tlt::cli

namespace tlt::cli {

int ListEventsCommand(const Flags& flags) {
  Status st = flags.Allow({"address", "token", "json"});
  if (!st.ok()) return Fail(st);
  auto cluster = ConnectTo(flags);
  if (!cluster.ok()) return Fail(cluster.status());
  auto events = (*cluster)->Events();
  if (!events.ok()) return Fail(events.status());
  if (flags.Has("json")) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& e : *events) j.push_back(ToJson(e));
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : *events)
    rows.push_back({FormatTimeMs(e.time_ms), e.actor_id.empty() ? "-" : e.actor_id, e.kind, e.detail});
  std::cout << Table({"TIME (UTC)", "ACTOR", "EVENT", "DETAIL"}, rows);
  return 0;
}

}  // namespace tlt::cli
