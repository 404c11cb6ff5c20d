#include "runtime/client.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <random>

#include "runtime/protocol_convert.h"

namespace tlt {

namespace {
std::mutex default_mutex;
std::shared_ptr<Client> default_client;
}  // namespace

std::shared_ptr<Client> Client::Default() {
  std::lock_guard<std::mutex> lock(default_mutex);
  return default_client;
}

void Client::SetDefault(std::shared_ptr<Client> client) {
  std::lock_guard<std::mutex> lock(default_mutex);
  default_client = std::move(client);
}

Client::Client(std::string head_endpoint, std::string token)
    : head_endpoint_(std::move(head_endpoint)), token_(std::move(token)) {
  std::mt19937_64 rng(std::random_device{}());
  char buf[40];
  snprintf(buf, sizeof buf, "c%d-%08llx", getpid(), static_cast<unsigned long long>(rng() & 0xffffffff));
  client_id_ = buf;
}

Client::~Client() {
  loop_.Stop();
  if (io_thread_.joinable()) io_thread_.join();
  for (auto& [id, call] : calls_) call.done(Status(ErrorCode::kCancelled, "client closed"));
  for (auto& [id, p] : control_pending_) p.Set(Status(ErrorCode::kCancelled, "client closed"));
}

Status Client::Connect(Millis timeout) {
  head_ = std::make_unique<zmq::socket_t>(ZmqContext(), zmq::socket_type::dealer);
  head_->set(zmq::sockopt::linger, 200);
  head_->set(zmq::sockopt::routing_id, client_id_);
  head_->connect(head_endpoint_);
  loop_.Watch(head_.get(), [this] { OnHeadSocket(); });
  io_thread_ = std::thread([this] { loop_.Run(); });
  auto ping = std::make_unique<OutMessage>();
  ping->envelope().getBody().setClusterStatus();
  auto reply = Request(std::move(ping), timeout);
  if (!reply.ok()) {
    if (reply.status().code() == ErrorCode::kTimeout)
      return Unavailable("no head answered at " + head_endpoint_ + " within " +
                         std::to_string(timeout.count()) +
                         " ms: is `tlt start --head` running there, and is the port right?");
    return reply.status();
  }
  auto r = (*reply)->envelope().getBody().getReply();
  if (r.getCode() != 0) return Status(ErrorCode(r.getCode()), r.getMessage());
  return Status::OK();
}

Result<std::shared_ptr<InMessage>> Client::Request(std::unique_ptr<OutMessage> message,
                                                   Millis timeout) {
  Promise<std::shared_ptr<InMessage>> promise;
  auto future = promise.GetFuture();
  const uint64_t id = next_request_id_++;
  std::shared_ptr<OutMessage> shared(std::move(message));
  loop_.Post([this, id, shared, promise] {
    shared->envelope().setRequestId(id);
    shared->envelope().setToken(token_);
    control_pending_[id] = promise;
    Status st = Send(*head_, nullptr, *shared);
    if (!st.ok()) {
      control_pending_.erase(id);
      promise.Set(st);
    }
  });
  auto reply = future.Get(timeout);
  if (!reply.ok()) {
    if (reply.status().code() == ErrorCode::kTimeout)
      loop_.Post([this, id] { control_pending_.erase(id); });
    return reply.status();
  }
  auto r = reply.value()->envelope().getBody().getReply();
  if (r.getCode() != 0) return Status(ErrorCode(r.getCode()), r.getMessage());
  return reply;
}

void Client::Notify(std::unique_ptr<OutMessage> message) {
  std::shared_ptr<OutMessage> shared(std::move(message));
  loop_.Post([this, shared] {
    shared->envelope().setToken(token_);
    (void)Send(*head_, nullptr, *shared);
  });
}

Future<Payload> Client::Call(const std::string& actor_id, const std::string& method,
                             Payload args) {
  Promise<Payload> promise;
  Call(actor_id, method, std::move(args), [promise](Result<Payload> r) { promise.Set(std::move(r)); });
  return promise.GetFuture();
}

void Client::Call(const std::string& actor_id, const std::string& method, Payload args,
                  CallDone done) {
  const uint64_t id = next_request_id_++;
  auto shared_args = std::make_shared<Payload>(std::move(args));
  loop_.Post([this, id, actor_id, method, shared_args, done = std::move(done)]() mutable {
    Route& route = routes_[actor_id];
    PendingCall& call = calls_[id];
    call.actor_id = actor_id;
    call.method = method;
    call.args = std::move(*shared_args);
    call.seq = ++route.next_seq;
    call.done = std::move(done);
    if (route.state == ActorState::kDead) {
      FailCall(id, Status(ErrorCode::kActorDied, "actor " + actor_id + " is dead: " + route.death_cause));
    } else if (!route.endpoint.empty()) {
      SendCall(id);
    } else {
      route.waiting.push_back(id);
      EnsureLookup(actor_id);
    }
  });
}

zmq::socket_t* Client::WorkerSocket(const std::string& endpoint) {
  auto it = workers_.find(endpoint);
  if (it != workers_.end()) return it->second.get();
  auto socket = std::make_unique<zmq::socket_t>(ZmqContext(), zmq::socket_type::dealer);
  socket->set(zmq::sockopt::linger, 0);
  socket->set(zmq::sockopt::routing_id, client_id_);
  socket->connect(endpoint);
  zmq::socket_t* raw = socket.get();
  loop_.Watch(raw, [this, raw] { OnWorkerSocket(raw); });
  workers_[endpoint] = std::move(socket);
  return raw;
}

void Client::SendCall(uint64_t request_id) {
  PendingCall& call = calls_[request_id];
  Route& route = routes_[call.actor_id];
  OutMessage out;
  out.envelope().setToken(token_);
  out.envelope().setRequestId(request_id);
  auto c = out.envelope().getBody().initCall();
  c.setActorId(call.actor_id);
  c.setMethod(call.method);
  c.setCallerId(client_id_);
  c.setSeq(call.seq);
  out.payload() = call.args;  // shares frames; kept for a re-send
  call.endpoint = route.endpoint;
  Status st = Send(*WorkerSocket(route.endpoint), nullptr, out);
  if (!st.ok()) FailCall(request_id, st);
}

void Client::FailCall(uint64_t request_id, const Status& status) {
  auto it = calls_.find(request_id);
  if (it == calls_.end()) return;
  CallDone done = std::move(it->second.done);
  calls_.erase(it);
  done(status);
}

void Client::Flush(Route& route) {
  std::vector<uint64_t> waiting;
  waiting.swap(route.waiting);
  std::sort(waiting.begin(), waiting.end(),
            [&](uint64_t a, uint64_t b) { return calls_[a].seq < calls_[b].seq; });
  for (uint64_t id : waiting) {
    if (!calls_.count(id)) continue;
    if (route.state == ActorState::kDead) {
      FailCall(id, Status(ErrorCode::kActorDied, "actor is dead: " + route.death_cause));
    } else {
      SendCall(id);
    }
  }
}

void Client::EnsureLookup(const std::string& actor_id) {
  Route& route = routes_[actor_id];
  if (route.lookup_in_flight) return;
  route.lookup_in_flight = true;
  const uint64_t id = next_request_id_++;
  OutMessage out;
  out.envelope().setToken(token_);
  out.envelope().setRequestId(id);
  auto lookup = out.envelope().getBody().initLookupActor();
  lookup.setActorId(actor_id);
  lookup.setWaitUntilSettled(true);
  Promise<std::shared_ptr<InMessage>> promise;
  promise.GetFuture().Then([this, actor_id](const Result<std::shared_ptr<InMessage>>& r) {
    Route& route = routes_[actor_id];
    route.lookup_in_flight = false;
    if (!r.ok()) return;
    auto reply = (*r)->envelope().getBody().getReply();
    if (reply.getCode() != 0) {
      route.state = ActorState::kDead;
      route.death_cause = reply.getMessage();
      Flush(route);
      return;
    }
    HandleActorUpdate(FromProto(reply.getActor()));
  });
  control_pending_[id] = promise;
  (void)Send(*head_, nullptr, out);
}

void Client::HandleActorUpdate(const ActorInfo& info) {
  Route& route = routes_[info.actor_id];
  route.max_task_retries = info.max_task_retries;
  const bool worker_lost = info.state == ActorState::kRestarting || info.state == ActorState::kDead;
  route.state = info.state;
  if (info.state == ActorState::kDead) route.death_cause = info.death_cause;
  if (worker_lost && !route.endpoint.empty()) {
    // Calls in flight on the lost worker: retry within budget, else fail.
    const std::string lost = route.endpoint;
    route.endpoint.clear();
    std::vector<uint64_t> in_flight;
    for (auto& [id, call] : calls_)
      if (call.actor_id == info.actor_id && call.endpoint == lost) in_flight.push_back(id);
    for (uint64_t id : in_flight) {
      PendingCall& call = calls_[id];
      const bool can_retry = info.state != ActorState::kDead &&
                             (route.max_task_retries < 0 || call.retries_used < route.max_task_retries);
      if (can_retry) {
        call.retries_used++;
        call.endpoint.clear();
        route.waiting.push_back(id);
      } else {
        FailCall(id, Status(ErrorCode::kActorDied,
                            "the actor's worker died while the call '" + call.method +
                                "' was in flight (" + info.death_cause +
                                (info.state == ActorState::kDead
                                     ? ")"
                                     : "); set max_task_retries to retry such calls")));
      }
    }
  }
  if (info.state == ActorState::kAlive && !info.endpoint.empty()) {
    route.endpoint = info.endpoint;
    Flush(route);
  } else if (info.state == ActorState::kDead) {
    Flush(route);
  } else if (!route.waiting.empty() && route.endpoint.empty()) {
    EnsureLookup(info.actor_id);
  }
}

void Client::OnHeadSocket() {
  for (;;) {
    auto received = Receive(*head_, false);
    if (!received.ok()) return;
    std::shared_ptr<InMessage> msg(std::move(received).value());
    try {
      auto body = msg->envelope().getBody();
      if (body.which() == proto::Envelope::Body::ACTOR_UPDATE) {
        HandleActorUpdate(FromProto(body.getActorUpdate()));
      } else if (body.which() == proto::Envelope::Body::REPLY) {
        auto it = control_pending_.find(msg->envelope().getRequestId());
        if (it == control_pending_.end()) continue;
        auto promise = it->second;
        control_pending_.erase(it);
        promise.Set(msg);
      }
    } catch (const kj::Exception& e) {
      LOG(WARNING) << "client dropped a malformed message from the head: " << e.getDescription().cStr();
    }
  }
}

void Client::OnWorkerSocket(zmq::socket_t* socket) {
  for (;;) {
    auto received = Receive(*socket, false);
    if (!received.ok()) return;
    try {
      HandleCallReply(**received);
    } catch (const kj::Exception& e) {
      LOG(WARNING) << "client dropped a malformed reply: " << e.getDescription().cStr();
    }
  }
}

void Client::HandleCallReply(const InMessage& msg) {
  const uint64_t id = msg.envelope().getRequestId();
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  auto reply = msg.envelope().getBody().getReply();
  const auto code = static_cast<ErrorCode>(reply.getCode());
  if (code == ErrorCode::kMoved) {
    PendingCall& call = it->second;
    Route& route = routes_[call.actor_id];
    std::string moved_to = reply.getMovedTo();
    if (!moved_to.empty()) {
      // The new worker holds the call-order table: re-send at once; it restores order.
      if (route.endpoint == call.endpoint) route.endpoint = moved_to;
      SendCall(id);
    } else {
      if (route.endpoint == call.endpoint) route.endpoint.clear();
      call.endpoint.clear();
      route.waiting.push_back(id);
      EnsureLookup(call.actor_id);
    }
    return;
  }
  CallDone done = std::move(it->second.done);
  calls_.erase(it);
  if (code != ErrorCode::kOk) {
    done(Status(code, reply.getMessage()));
  } else {
    done(msg.payload());
  }
}

}  // namespace tlt
