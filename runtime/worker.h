// Worker: the process that hosts actors and runs their calls.
//
// A node agent starts a worker by running the driver's own program with TLT_WORKER_ID in
// its environment; tlt::Init() sees it and runs a Worker instead of the user's main. The
// worker binds a ROUTER socket for calls (callers connect to it directly), connects a
// DEALER to the controller for control messages, and registers with the controller.
//
// Calls to one actor run one at a time on the worker's loop thread, in each caller's
// order: every call carries (caller id, sequence number); a call that arrives ahead of its
// predecessor is held until the gap fills. That order table moves with the actor when it
// migrates, so calls re-sent to the new place run exactly once, in order. After an actor
// moves out, its calls are answered kMoved with the new endpoint. An exception or a decode
// error in a call becomes an error reply; the worker keeps serving.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "runtime/actor.h"
#include "runtime/event_loop.h"
#include "runtime/transport.h"

namespace tlt {

struct WorkerOptions {
  std::string worker_id;
  std::string node_id;
  std::string head_endpoint;     // tcp://host:port of the controller
  std::string bind_host = "127.0.0.1";
  std::string token;             // cluster token; empty when the cluster has none
};

// Reads WorkerOptions from TLT_WORKER_ID, TLT_NODE_ID, TLT_HEAD, TLT_BIND_HOST, TLT_TOKEN.
Result<WorkerOptions> WorkerOptionsFromEnvironment();

class Worker {
 public:
  explicit Worker(WorkerOptions options);
  ~Worker();
  // Binds, registers and serves until the controller says shutdown. Returns the exit code.
  int Run();

 private:
  struct CallerOrder {
    uint64_t last_done = 0;                               // highest seq executed
    std::map<uint64_t, std::unique_ptr<InMessage>> held;  // arrived early
  };
  struct Hosted {
    std::string class_name;
    std::string name;
    Payload constructor_args;
    std::unique_ptr<ActorInstance> instance;  // null once moved out
    std::string moved_to;                     // endpoint after a move
    std::map<std::string, CallerOrder> callers;
  };

  void OnCallSocket();
  void OnControlSocket();
  void HandleCall(std::unique_ptr<InMessage> msg);
  void Execute(Hosted& actor, const std::string& actor_id, const InMessage& msg);
  void HandleHostActor(const InMessage& msg);
  void HandleMoveOut(const InMessage& msg);
  void HandleRestore(const InMessage& msg);
  void ReplyOnCalls(const InMessage& to, const Status& status, Payload payload = {},
                    const std::string& moved_to = "");
  void ReplyOnControl(uint64_t request_id, const Status& status, int64_t elapsed_us = 0);
  Payload EncodeOrderTable(const Hosted& actor) const;
  Status DecodeOrderTable(const Payload& p, Hosted* actor) const;

  WorkerOptions options_;
  EventLoop loop_;
  std::unique_ptr<zmq::socket_t> calls_;    // ROUTER, bound
  std::unique_ptr<zmq::socket_t> control_;  // DEALER to the controller
  std::string endpoint_;
  std::map<std::string, Hosted> actors_;
};

}  // namespace tlt
