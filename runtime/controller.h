// Controller (the head): node registry, actor directory, resource accounting, placement,
// health checks, restarts, migration and an event log. One per cluster.
//
// It serves one ROUTER socket. Peers name themselves by routing id: "n:<node>" node
// agents, "w:<worker>" workers, anything else is a client (driver or CLI). Calls between
// actors never pass through here: the controller is on the control path only.
//
// Every message must carry the cluster token when one is set; otherwise it is refused
// (kUnauthenticated) and the refusal is logged. Malformed bytes are dropped and logged.
// All state lives on the controller's EventLoop thread; the class is not thread-safe and
// is driven only by its loop. Time comes from the injected Clock.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/actor_info.h"
#include "runtime/clock.h"
#include "runtime/event_loop.h"
#include "runtime/placement.h"
#include "runtime/transport.h"

namespace tlt {

struct ControllerOptions {
  std::string bind_host = "127.0.0.1";
  int port = 0;                        // 0: any free port (see Controller::port())
  std::string token;                   // required when bind_host is not loopback
  int64_t heartbeat_timeout_ms = 3000; // a node silent this long is declared dead
  int64_t moved_worker_grace_ms = 5000;  // an emptied worker answers "moved" this long
};

class Controller {
 public:
  Controller(ControllerOptions options, EventLoop* loop, Clock* clock);
  ~Controller();

  // Binds the socket and starts the health timer. Fails if the address is taken, or if
  // a non-loopback bind has no token.
  Status Start();
  int port() const { return port_; }
  std::string endpoint() const;  // tcp://host:port

 private:
  struct NodeRecord {
    NodeInfo info;
    std::string routing_id;
  };
  struct WorkerRecord {
    std::string worker_id;
    std::string node_id;
    std::string routing_id;
    std::string endpoint;
    int pid = 0;
    bool registered = false;
    std::string actor_id;
    bool migration_target = false;
    Allocation allocation;  // what this worker's actor holds on its node
    std::string executable;
  };
  struct ParkedLookup {
    std::string routing_id;
    uint64_t request_id;
    bool with_events;
  };
  struct PendingMigration {
    std::string requester;
    uint64_t request_id = 0;
    int64_t start_ms = 0;
    std::string target_worker;
    bool same_allocation = false;  // the target reuses the actor's own allocation
  };
  struct ActorRecord {
    ActorInfo info;
    ResourceRequest request;
    PlacementOptions placement;
    std::string executable;
    Payload constructor_args;
    bool kill_requested = false;
    std::deque<ActorEvent> events;
    std::vector<ParkedLookup> parked;
    std::set<std::string> subscribers;
    std::unique_ptr<PendingMigration> migration;
  };
  struct GroupRecord {
    std::vector<ResourceRequest> bundles;
    std::vector<Allocation> allocations;
    std::vector<std::string> bundle_actor;  // actor id using each bundle ("" if free)
  };

  void OnSocket();
  void Dispatch(const InMessage& msg);
  void Reply(const std::string& to, uint64_t request_id, const Status& status,
             const std::function<void(proto::Reply::Builder)>& fill = {});
  void SendTo(const std::string& routing_id, OutMessage& out);
  void SendRequest(const std::string& routing_id, OutMessage& out,
                   std::function<void(const Status&, const InMessage*)> on_reply);

  // Handlers, one per message kind.
  void OnRegisterNode(const InMessage& msg);
  void OnHeartbeat(const InMessage& msg);
  void OnRegisterWorker(const InMessage& msg);
  void OnWorkerExited(const InMessage& msg);
  void OnCreateActor(const InMessage& msg);
  void OnLookupActor(const InMessage& msg);
  void OnKillActor(const InMessage& msg);
  void OnMigrateActor(const InMessage& msg);
  void OnListActors(const InMessage& msg);
  void OnClusterStatus(const InMessage& msg);
  void OnListEvents(const InMessage& msg);
  void OnCreateGroup(const InMessage& msg);
  void OnRemoveGroup(const InMessage& msg);
  void OnShutdown(const InMessage& msg);
  void OnReply(const InMessage& msg);

  // Lifecycle.
  void Schedule(const std::string& actor_id);
  void RetryPending();
  Result<Allocation> PlaceInGroup(ActorRecord& actor);
  std::string StartWorker(const std::string& node_id, const std::string& actor_id,
                          const Allocation& allocation, const std::string& executable,
                          bool migration_target);
  void StopWorker(const std::string& worker_id);
  void ReleaseWorker(WorkerRecord& worker);
  void WorkerGone(const std::string& worker_id, const std::string& cause);
  void ActorFailed(ActorRecord& actor, const std::string& cause);
  void FinishMigration(const std::string& actor_id, const Status& status, int64_t elapsed_us);
  void SetState(ActorRecord& actor, ActorState state, const std::string& detail);
  void CheckHeartbeats();
  void AddEvent(ActorRecord* actor, const std::string& actor_id, const std::string& kind,
                const std::string& detail);
  void FillActor(const ActorRecord& actor, bool with_events, proto::ActorInfo::Builder out);
  std::vector<NodeView> NodeViews(const std::string& exclude_node = "") const;
  std::string NewId(const char* prefix);

  ControllerOptions options_;
  EventLoop* loop_;
  Clock* clock_;
  std::unique_ptr<zmq::socket_t> socket_;
  int port_ = 0;
  uint64_t next_request_id_ = 1;
  uint64_t id_counter_ = 0;
  std::map<uint64_t, std::function<void(const Status&, const InMessage*)>> pending_replies_;
  std::map<std::string, NodeRecord> nodes_;
  std::map<std::string, WorkerRecord> workers_;
  std::map<std::string, ActorRecord> actors_;
  std::map<std::string, std::string> names_;  // live actor name -> id
  std::map<std::string, GroupRecord> groups_;
  std::vector<std::string> pending_schedule_;  // actors waiting for resources
  std::deque<ActorEvent> event_log_;
  bool shutting_down_ = false;
};

}  // namespace tlt
