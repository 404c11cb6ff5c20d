// NodeAgent: one per host. Discovers the host's CPUs and GPUs (real ones through
// nvidia-smi where present, simulated ones from --simulated-gpus), registers them with the
// controller, sends heartbeats, and starts, watches and stops worker processes.
//
// A worker is the actor's own program (the executable named at actor creation) run with
// TLT_WORKER_ID etc. in its environment, CUDA_VISIBLE_DEVICES set to its real GPUs, and
// PR_SET_PDEATHSIG so it never outlives its agent. When a worker exits the agent reports
// the exit code or signal. Runs on its own EventLoop; not thread-safe.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/event_loop.h"
#include "runtime/resources.h"
#include "runtime/transport.h"

namespace tlt {

struct NodeAgentOptions {
  std::string head_endpoint;     // tcp://host:port
  std::string node_id;           // empty: generated
  std::string bind_host = "127.0.0.1";  // where this node's workers listen
  std::string token;
  std::string simulated_gpus;    // "TYPE:N[,TYPE:N]" (memory 80 GiB each unless TYPE:N:GIB)
  double cpus = 0;               // 0: the host's core count
  std::map<std::string, double> custom;
  bool discover_real_gpus = true;
  int heartbeat_ms = 500;
  std::string log_dir;           // worker stdout/stderr go to log_dir/worker-<id>.log
};

// Parses "H200:2,A100:1" or "SIM:2:24" (type, count, GiB). Errors name the bad part.
Result<std::vector<GpuInfo>> ParseSimulatedGpus(const std::string& spec, int first_index);
// Real GPUs via `nvidia-smi`; empty when there is none.
std::vector<GpuInfo> DiscoverRealGpus();

class NodeAgent {
 public:
  NodeAgent(NodeAgentOptions options, EventLoop* loop);
  ~NodeAgent();  // kills the workers it started
  Status Start();
  const std::string& node_id() const { return options_.node_id; }
  const NodeResources& resources() const { return resources_; }

 private:
  struct Child {
    pid_t pid = 0;
    std::string worker_id;
  };
  void OnSocket();
  void StartWorker(const std::string& worker_id, const std::string& executable,
                   const std::vector<int>& gpu_indices);
  void ReapChildren();
  void KillAll();
  void SendRegistration();

  NodeAgentOptions options_;
  EventLoop* loop_;
  std::unique_ptr<zmq::socket_t> socket_;
  NodeResources resources_;
  std::map<pid_t, Child> children_;
  bool registered_ = false;
};

}  // namespace tlt
