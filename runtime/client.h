// Client: a process's connection to a cluster, used by drivers, the CLI and actors that
// call other actors.
//
// It owns one I/O thread (an EventLoop) with a DEALER to the controller and one DEALER per
// worker it calls. Control requests (create, lookup, kill, migrate, status) go to the
// controller; actor calls go straight to the actor's worker. Per actor the client keeps a
// route: the worker endpoint, and a sequence number per call so the worker runs calls in
// the order this client made them. When a worker answers "moved" the call is re-sent to
// the new endpoint; when the controller reports the worker died the calls in flight are
// retried (up to the actor's max_task_retries) once it is ALIVE again, or fail with
// kActorDied naming the cause. Thread-safe: any thread may call any method.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>

#include "runtime/actor_info.h"
#include "runtime/event_loop.h"
#include "runtime/future.h"
#include "runtime/transport.h"

namespace tlt {

class Client {
 public:
  Client(std::string head_endpoint, std::string token);
  ~Client();

  // Starts the I/O thread and checks that the head answers within `timeout`.
  Status Connect(Millis timeout);

  // Sends a control message to the head and waits for its reply.
  Result<std::shared_ptr<InMessage>> Request(std::unique_ptr<OutMessage> message, Millis timeout);
  // Sends a control message to the head without waiting.
  void Notify(std::unique_ptr<OutMessage> message);

  // Calls `method` on the actor; the future holds the encoded result.
  Future<Payload> Call(const std::string& actor_id, const std::string& method, Payload args);
  // The same, delivering the result to `done` on the I/O thread (it must not block).
  using CallDone = std::function<void(Result<Payload>)>;
  void Call(const std::string& actor_id, const std::string& method, Payload args, CallDone done);

  const std::string& client_id() const { return client_id_; }
  const std::string& head_endpoint() const { return head_endpoint_; }
  const std::string& token() const { return token_; }

  // The client that decoded actor handles attach to in this process (set by Cluster and
  // by workers). May be null.
  static std::shared_ptr<Client> Default();
  static void SetDefault(std::shared_ptr<Client> client);

 private:
  struct PendingCall {
    std::string actor_id;
    std::string method;
    Payload args;
    uint64_t seq = 0;
    CallDone done;
    std::string endpoint;  // where it was sent ("" while waiting)
    int retries_used = 0;
  };
  struct Route {
    std::string endpoint;        // empty: location unknown
    ActorState state = ActorState::kPendingCreation;
    int max_task_retries = 0;
    uint64_t next_seq = 0;
    std::vector<uint64_t> waiting;  // request ids waiting for a location
    bool lookup_in_flight = false;
    std::string death_cause;
  };

  void OnHeadSocket();
  void OnWorkerSocket(zmq::socket_t* socket);
  void HandleCallReply(const InMessage& msg);
  void HandleActorUpdate(const ActorInfo& info);
  void SendCall(uint64_t request_id);
  void Flush(Route& route);
  void EnsureLookup(const std::string& actor_id);
  void FailCall(uint64_t request_id, const Status& status);
  zmq::socket_t* WorkerSocket(const std::string& endpoint);

  const std::string head_endpoint_;
  const std::string token_;
  std::string client_id_;
  EventLoop loop_;
  std::thread io_thread_;
  std::atomic<uint64_t> next_request_id_{1};
  // Owned by the I/O thread:
  std::unique_ptr<zmq::socket_t> head_;
  std::map<std::string, std::unique_ptr<zmq::socket_t>> workers_;
  std::map<uint64_t, Promise<std::shared_ptr<InMessage>>> control_pending_;
  std::unordered_map<uint64_t, PendingCall> calls_;
  std::map<std::string, Route> routes_;
};

}  // namespace tlt
