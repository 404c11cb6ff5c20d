#include "runtime/node_agent.h"

#include <glog/logging.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <cstdio>
#include <cstring>

extern char** environ;
#include <random>
#include <sstream>
#include <thread>

#include "runtime/protocol_convert.h"

namespace tlt {

Result<std::vector<GpuInfo>> ParseSimulatedGpus(const std::string& spec, int first_index) {
  std::vector<GpuInfo> gpus;
  if (spec.empty()) return gpus;
  std::stringstream parts(spec);
  std::string part;
  int index = first_index;
  while (std::getline(parts, part, ',')) {
    std::vector<std::string> f;
    std::stringstream fields(part);
    std::string x;
    while (std::getline(fields, x, ':')) f.push_back(x);
    if (f.size() < 2 || f.size() > 3 || f[0].empty())
      return InvalidArgument("--simulated-gpus: '" + part + "' is not TYPE:COUNT[:GIB]");
    int count = 0;
    double gib = 80;
    try {
      count = std::stoi(f[1]);
      if (f.size() == 3) gib = std::stod(f[2]);
    } catch (...) {
      return InvalidArgument("--simulated-gpus: '" + part + "' has a non-numeric count or GiB");
    }
    if (count <= 0 || count > 1024 || gib <= 0)
      return InvalidArgument("--simulated-gpus: '" + part + "' needs a count in 1..1024");
    for (int i = 0; i < count; ++i)
      gpus.push_back({index++, f[0], uint64_t(gib * (1ull << 30)), true});
  }
  return gpus;
}

std::vector<GpuInfo> DiscoverRealGpus() {
  std::vector<GpuInfo> gpus;
  FILE* p = popen("nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits "
                  "2>/dev/null", "r");
  if (!p) return gpus;
  char line[512];
  while (fgets(line, sizeof line, p)) {
    std::stringstream ss(line);
    std::string idx, name, mem;
    if (!std::getline(ss, idx, ',') || !std::getline(ss, name, ',') || !std::getline(ss, mem))
      continue;
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(" \t\n"));
      s.erase(s.find_last_not_of(" \t\n") + 1);
      return s;
    };
    name = trim(name);
    // "NVIDIA H200" -> "H200": the type used in resource requests.
    if (name.rfind("NVIDIA ", 0) == 0) name = name.substr(7);
    name = name.substr(0, name.find(' '));
    try {
      gpus.push_back({std::stoi(trim(idx)), name, uint64_t(std::stoull(trim(mem))) << 20, false});
    } catch (...) {
    }
  }
  pclose(p);
  return gpus;
}

NodeAgent::NodeAgent(NodeAgentOptions options, EventLoop* loop)
    : options_(std::move(options)), loop_(loop) {}

NodeAgent::~NodeAgent() { KillAll(); }

Status NodeAgent::Start() {
  if (options_.node_id.empty()) {
    std::mt19937_64 rng(std::random_device{}());
    char buf[32];
    snprintf(buf, sizeof buf, "n%08llx", static_cast<unsigned long long>(rng() & 0xffffffff));
    options_.node_id = buf;
  }
  resources_.cpus = options_.cpus > 0 ? options_.cpus : std::thread::hardware_concurrency();
  if (options_.discover_real_gpus) resources_.gpus = DiscoverRealGpus();
  auto sim = ParseSimulatedGpus(options_.simulated_gpus, int(resources_.gpus.size()));
  if (!sim.ok()) return sim.status();
  resources_.gpus.insert(resources_.gpus.end(), sim->begin(), sim->end());
  resources_.custom = options_.custom;
  for (const auto& g : resources_.gpus) resources_.custom["gpu_type:" + g.type] += 1;

  socket_ = std::make_unique<zmq::socket_t>(ZmqContext(), zmq::socket_type::dealer);
  socket_->set(zmq::sockopt::linger, 500);
  socket_->set(zmq::sockopt::routing_id, "n:" + options_.node_id);
  socket_->connect(options_.head_endpoint);
  loop_->Watch(socket_.get(), [this] { OnSocket(); });
  SendRegistration();
  loop_->Every(std::chrono::milliseconds(options_.heartbeat_ms), [this] {
    if (!registered_) { SendRegistration(); return; }
    OutMessage hb;
    hb.envelope().setToken(options_.token);
    hb.envelope().getBody().initHeartbeat().setNodeId(options_.node_id);
    (void)Send(*socket_, nullptr, hb);
  });
  loop_->Every(std::chrono::milliseconds(20), [this] { ReapChildren(); });
  return Status::OK();
}

void NodeAgent::SendRegistration() {
  OutMessage reg;
  reg.envelope().setToken(options_.token);
  reg.envelope().setRequestId(1);
  auto r = reg.envelope().getBody().initRegisterNode();
  r.setNodeId(options_.node_id);
  r.setAddress(options_.bind_host);
  r.setPid(getpid());
  ToProto(resources_, r.initResources());
  (void)Send(*socket_, nullptr, reg);
}

void NodeAgent::OnSocket() {
  for (;;) {
    auto received = Receive(*socket_, false);
    if (!received.ok()) {
      if (received.status().code() == ErrorCode::kMalformed)
        LOG(WARNING) << "node agent dropped a malformed message";
      return;
    }
    const InMessage& msg = **received;
    try {
      auto body = msg.envelope().getBody();
      switch (body.which()) {
        case proto::Envelope::Body::REPLY: {
          auto reply = body.getReply();
          if (reply.getCode() != 0) {
            LOG(ERROR) << "head refused node " << options_.node_id << ": "
                       << reply.getMessage().cStr();
            if (reply.getCode() == uint8_t(ErrorCode::kUnauthenticated)) loop_->Stop();
          } else if (!registered_) {
            registered_ = true;
            LOG(INFO) << "node " << options_.node_id << " registered with " << options_.head_endpoint;
          }
          break;
        }
        case proto::Envelope::Body::START_WORKER: {
          auto s = body.getStartWorker();
          std::vector<int> gpus;
          for (auto g : s.getGpuIndices()) gpus.push_back(g);
          StartWorker(s.getWorkerId(), s.getExecutable(), gpus);
          break;
        }
        case proto::Envelope::Body::STOP_WORKER: {
          std::string id = body.getStopWorker().getWorkerId();
          for (auto& [pid, c] : children_)
            if (c.worker_id == id) kill(pid, SIGKILL);
          break;
        }
        case proto::Envelope::Body::SHUTDOWN:
          LOG(INFO) << "node " << options_.node_id << ": shutdown";
          KillAll();
          loop_->Stop();
          return;
        default:
          LOG(WARNING) << "node agent: unexpected message kind " << int(body.which());
      }
    } catch (const kj::Exception& e) {
      LOG(WARNING) << "node agent dropped a malformed message: " << e.getDescription().cStr();
    }
  }
}

void NodeAgent::StartWorker(const std::string& worker_id, const std::string& executable,
                            const std::vector<int>& gpu_indices) {
  std::string real_gpus, sim_gpus;
  for (int i : gpu_indices) {
    bool simulated = true;
    for (const auto& g : resources_.gpus)
      if (g.index == i) simulated = g.simulated;
    std::string& list = simulated ? sim_gpus : real_gpus;
    list += (list.empty() ? "" : ",") + std::to_string(i);
  }
  std::vector<std::string> env_strings = {
      "TLT_WORKER_ID=" + worker_id, "TLT_NODE_ID=" + options_.node_id,
      "TLT_HEAD=" + options_.head_endpoint, "TLT_BIND_HOST=" + options_.bind_host,
      "TLT_TOKEN=" + options_.token, "TLT_SIMULATED_GPUS=" + sim_gpus,
      "CUDA_VISIBLE_DEVICES=" + real_gpus};
  // Build argv/envp before fork: the child of a threaded process may only exec.
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
    std::string key = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const auto& s : env_strings) overridden |= s.compare(0, key.size() + 1, key + "=") == 0;
    if (!overridden) envp.push_back(*e);
  }
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string log_path;
  if (!options_.log_dir.empty()) log_path = options_.log_dir + "/worker-" + worker_id + ".log";
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    PLOG(ERROR) << "fork for worker " << worker_id;
    return;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    if (!log_path.empty()) {
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
    }
    char* argv[] = {const_cast<char*>(executable.c_str()), nullptr};
    execve(executable.c_str(), argv, envp.data());
    fprintf(stderr, "tlt: cannot run worker program %s: %s\n", executable.c_str(), strerror(errno));
    _exit(127);
  }
  children_[pid] = {pid, worker_id};
  VLOG(1) << "started worker " << worker_id << " pid " << pid << " (" << executable << ")";
}

void NodeAgent::ReapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    auto it = children_.find(pid);
    if (it == children_.end()) continue;
    OutMessage out;
    out.envelope().setToken(options_.token);
    auto e = out.envelope().getBody().initWorkerExited();
    e.setWorkerId(it->second.worker_id);
    e.setNodeId(options_.node_id);
    if (WIFSIGNALED(status)) e.setSignal(WTERMSIG(status));
    if (WIFEXITED(status)) e.setExitCode(WEXITSTATUS(status));
    LOG(INFO) << "worker " << it->second.worker_id << " (pid " << pid << ") "
              << (WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                      : "exited with code " + std::to_string(WEXITSTATUS(status)));
    children_.erase(it);
    (void)Send(*socket_, nullptr, out);
  }
}

void NodeAgent::KillAll() {
  for (auto& [pid, c] : children_) kill(pid, SIGKILL);
  for (auto& [pid, c] : children_) waitpid(pid, nullptr, 0);
  children_.clear();
}

}  // namespace tlt
