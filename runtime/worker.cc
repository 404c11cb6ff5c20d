#include "runtime/worker.h"

#include <glog/logging.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "runtime/nested_payload.h"

namespace tlt {

namespace {
std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
int64_t NowUs() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Result<WorkerOptions> WorkerOptionsFromEnvironment() {
  WorkerOptions o;
  o.worker_id = Env("TLT_WORKER_ID");
  o.node_id = Env("TLT_NODE_ID");
  o.head_endpoint = Env("TLT_HEAD");
  if (!Env("TLT_BIND_HOST").empty()) o.bind_host = Env("TLT_BIND_HOST");
  o.token = Env("TLT_TOKEN");
  if (o.worker_id.empty() || o.head_endpoint.empty())
    return InvalidArgument("worker started without TLT_WORKER_ID / TLT_HEAD in its environment");
  return o;
}

Worker::Worker(WorkerOptions options) : options_(std::move(options)) {}
Worker::~Worker() = default;

int Worker::Run() {
  calls_ = std::make_unique<zmq::socket_t>(ZmqContext(), zmq::socket_type::router);
  calls_->set(zmq::sockopt::linger, 0);
  calls_->bind("tcp://" + options_.bind_host + ":0");
  endpoint_ = BoundEndpoint(*calls_);
  control_ = std::make_unique<zmq::socket_t>(ZmqContext(), zmq::socket_type::dealer);
  control_->set(zmq::sockopt::linger, 1000);
  control_->set(zmq::sockopt::routing_id, "w:" + options_.worker_id);
  control_->connect(options_.head_endpoint);
  loop_.Watch(calls_.get(), [this] { OnCallSocket(); });
  loop_.Watch(control_.get(), [this] { OnControlSocket(); });

  OutMessage reg;
  reg.envelope().setToken(options_.token);
  auto r = reg.envelope().getBody().initRegisterWorker();
  r.setWorkerId(options_.worker_id);
  r.setNodeId(options_.node_id);
  r.setEndpoint(endpoint_);
  r.setPid(getpid());
  CHECK_OK(Send(*control_, nullptr, reg));
  LOG(INFO) << "worker " << options_.worker_id << " (pid " << getpid() << ") serving on "
            << endpoint_;
  loop_.Run();
  return 0;
}

void Worker::OnControlSocket() {
  for (;;) {
    auto received = Receive(*control_, /*routed=*/false);
    if (!received.ok()) {
      if (received.status().code() == ErrorCode::kMalformed)
        LOG(WARNING) << "dropped a malformed control message: " << received.status().message();
      return;
    }
    const InMessage& msg = **received;
    try {
      auto body = msg.envelope().getBody();
      switch (body.which()) {
        case proto::Envelope::Body::HOST_ACTOR: HandleHostActor(msg); break;
        case proto::Envelope::Body::MOVE_OUT: HandleMoveOut(msg); break;
        case proto::Envelope::Body::SHUTDOWN:
          LOG(INFO) << "worker " << options_.worker_id << ": shutdown requested";
          loop_.Stop();
          return;
        default:
          LOG(WARNING) << "worker: unexpected control message " << int(body.which());
      }
    } catch (const kj::Exception& e) {
      LOG(WARNING) << "dropped a malformed control message: " << e.getDescription().cStr();
    }
  }
}

void Worker::OnCallSocket() {
  for (;;) {
    auto received = Receive(*calls_, /*routed=*/true);
    if (!received.ok()) {
      if (received.status().code() == ErrorCode::kMalformed)
        LOG(WARNING) << "dropped a malformed call: " << received.status().message();
      return;
    }
    try {
      auto& msg = *received;
      if (!options_.token.empty() && msg->envelope().getToken() != options_.token) {
        LOG(WARNING) << "refused a message with a wrong cluster token";
        ReplyOnCalls(*msg, Status(ErrorCode::kUnauthenticated, "wrong or missing cluster token"));
        continue;
      }
      auto which = msg->envelope().getBody().which();
      if (which == proto::Envelope::Body::CALL) {
        HandleCall(std::move(*received));
      } else if (which == proto::Envelope::Body::RESTORE_ACTOR) {
        HandleRestore(*msg);
      } else {
        ReplyOnCalls(*msg, Status(ErrorCode::kMalformed, "a worker takes calls and restores only"));
      }
    } catch (const kj::Exception& e) {
      LOG(WARNING) << "dropped a malformed call: " << e.getDescription().cStr();
    }
  }
}

void Worker::HandleCall(std::unique_ptr<InMessage> msg) {
  auto call = msg->envelope().getBody().getCall();
  std::string actor_id = call.getActorId();
  auto it = actors_.find(actor_id);
  if (it == actors_.end()) {
    ReplyOnCalls(*msg, NotFound("actor " + actor_id + " is not hosted on worker " +
                                options_.worker_id));
    return;
  }
  Hosted& actor = it->second;
  if (!actor.instance) {
    ReplyOnCalls(*msg, Status(ErrorCode::kMoved, "actor " + actor_id + " moved"), {},
                 actor.moved_to);
    return;
  }
  CallerOrder& order = actor.callers[call.getCallerId()];
  const uint64_t seq = call.getSeq();
  if (order.last_done != 0 && seq <= order.last_done) {
    ReplyOnCalls(*msg, Internal("call " + std::to_string(seq) + " from this caller already ran"));
    return;
  }
  if (order.last_done != 0 && seq != order.last_done + 1) {
    order.held.emplace(seq, std::move(msg));  // runs when its predecessors have run
    return;
  }
  Execute(actor, actor_id, *msg);
  order.last_done = seq;
  // Run held successors that are now in order.
  for (auto h = order.held.find(order.last_done + 1); h != order.held.end();
       h = order.held.find(order.last_done + 1)) {
    auto next = std::move(h->second);
    order.held.erase(h);
    Execute(actor, actor_id, *next);
    ++order.last_done;
    if (!actor.instance) break;
  }
}

void Worker::Execute(Hosted& actor, const std::string& actor_id, const InMessage& msg) {
  auto call = msg.envelope().getBody().getCall();
  Result<Payload> result = actor.instance->Invoke(call.getMethod(), msg.payload());
  if (!result.ok()) {
    VLOG(1) << "actor " << actor_id << " call " << call.getMethod().cStr()
            << " failed: " << result.status().ToString();
    ReplyOnCalls(msg, result.status());
  } else {
    ReplyOnCalls(msg, Status::OK(), std::move(result).value());
  }
}

void Worker::ReplyOnCalls(const InMessage& to, const Status& status, Payload payload,
                          const std::string& moved_to) {
  OutMessage out;
  out.envelope().setRequestId(to.envelope().getRequestId());
  auto reply = out.envelope().getBody().initReply();
  reply.setCode(static_cast<uint8_t>(status.code()));
  reply.setMessage(status.message());
  reply.setMovedTo(moved_to);
  out.set_payload(std::move(payload));
  Status st = Send(*calls_, &to.routing_id(), out);
  if (!st.ok()) LOG(WARNING) << "reply not sent: " << st.ToString();
}

void Worker::ReplyOnControl(uint64_t request_id, const Status& status, int64_t elapsed_us) {
  OutMessage out;
  out.envelope().setToken(options_.token);
  out.envelope().setRequestId(request_id);
  auto reply = out.envelope().getBody().initReply();
  reply.setCode(static_cast<uint8_t>(status.code()));
  reply.setMessage(status.message());
  reply.setElapsedUs(elapsed_us);
  Status st = Send(*control_, nullptr, out);
  if (!st.ok()) LOG(WARNING) << "control reply not sent: " << st.ToString();
}

void Worker::HandleHostActor(const InMessage& msg) {
  auto host = msg.envelope().getBody().getHostActor();
  std::string actor_id = host.getActorId();
  std::string class_name = host.getClassName();
  const ActorClassBase* cls = ActorRegistry::Get().Find(class_name);
  if (!cls) {
    ReplyOnControl(msg.envelope().getRequestId(),
                   NotFound("this program has no actor class '" + class_name +
                            "' registered (TLT_ACTOR in the program that created the actor?)"));
    return;
  }
  auto instance = cls->Construct(msg.payload());
  if (!instance.ok()) {
    ReplyOnControl(msg.envelope().getRequestId(), instance.status());
    return;
  }
  Hosted& h = actors_[actor_id];
  h.class_name = class_name;
  h.name = host.getName();
  h.constructor_args = msg.payload();
  h.instance = std::move(instance).value();
  LOG(INFO) << "hosting actor " << actor_id << " (" << class_name << ")";
  ReplyOnControl(msg.envelope().getRequestId(), Status::OK());
}

Payload Worker::EncodeOrderTable(const Hosted& actor) const {
  std::map<std::string, uint64_t> table;
  for (const auto& [caller, order] : actor.callers) table[caller] = order.last_done;
  return EncodePayload(table);
}

Status Worker::DecodeOrderTable(const Payload& p, Hosted* actor) const {
  std::map<std::string, uint64_t> table;
  RETURN_NOT_OK(DecodePayload(p, &table));
  for (const auto& [caller, last] : table) actor->callers[caller].last_done = last;
  return Status::OK();
}

void Worker::HandleMoveOut(const InMessage& msg) {
  const int64_t start = NowUs();
  auto move = msg.envelope().getBody().getMoveOut();
  std::string actor_id = move.getActorId();
  std::string target = move.getTargetEndpoint();
  const uint64_t request_id = msg.envelope().getRequestId();
  auto it = actors_.find(actor_id);
  if (it == actors_.end() || !it->second.instance) {
    ReplyOnControl(request_id, NotFound("actor " + actor_id + " is not hosted here"));
    return;
  }
  Hosted& actor = it->second;
  auto state = actor.instance->SaveState();
  if (!state.ok()) {
    ReplyOnControl(request_id, state.status().WithContext("checkpoint of " + actor_id));
    return;
  }
  OutMessage out;
  out.envelope().setToken(options_.token);
  auto restore = out.envelope().getBody().initRestoreActor();
  restore.setActorId(actor_id);
  restore.setClassName(actor.class_name);
  restore.setName(actor.name);
  out.set_payload(PackPayloads({actor.constructor_args, *state, EncodeOrderTable(actor)}));

  zmq::socket_t peer(ZmqContext(), zmq::socket_type::dealer);
  peer.set(zmq::sockopt::linger, 0);
  peer.connect(target);
  Status st = Send(peer, nullptr, out);
  Status remote = st;
  if (st.ok()) {
    zmq::pollitem_t item{peer.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(120000));
    auto reply = Receive(peer, /*routed=*/false);
    if (!reply.ok()) {
      remote = Unavailable("the target worker did not confirm the restore within 120 s");
    } else {
      auto r = (*reply)->envelope().getBody().getReply();
      remote = Status(static_cast<ErrorCode>(r.getCode()), r.getMessage());
    }
  }
  if (!remote.ok()) {
    LOG(WARNING) << "move of " << actor_id << " failed, keeping it here: " << remote.ToString();
    ReplyOnControl(request_id, remote.WithContext("restore at " + target));
    return;
  }
  actor.instance.reset();
  actor.moved_to = target;
  // Calls held for ordering never ran: they are answered kMoved and re-sent by callers.
  for (auto& [caller, order] : actor.callers) {
    for (auto& [seq, held] : order.held)
      ReplyOnCalls(*held, Status(ErrorCode::kMoved, "actor moved"), {}, target);
    order.held.clear();
  }
  LOG(INFO) << "actor " << actor_id << " moved to " << target << " in "
            << (NowUs() - start) / 1000.0 << " ms";
  ReplyOnControl(request_id, Status::OK(), NowUs() - start);
}

void Worker::HandleRestore(const InMessage& msg) {
  auto restore = msg.envelope().getBody().getRestoreActor();
  std::string actor_id = restore.getActorId();
  std::string class_name = restore.getClassName();
  std::vector<Payload> parts;
  Status st = UnpackPayloads(msg.payload(), &parts);
  if (st.ok() && parts.size() != 3) st = Status(ErrorCode::kMalformed, "restore needs 3 parts");
  const ActorClassBase* cls = ActorRegistry::Get().Find(class_name);
  if (st.ok() && !cls) st = NotFound("no actor class '" + class_name + "' in this program");
  std::unique_ptr<ActorInstance> instance;
  if (st.ok()) {
    auto made = cls->Construct(parts[0]);
    st = made.status();
    if (made.ok()) instance = std::move(made).value();
  }
  if (st.ok()) st = instance->LoadState(parts[1]);
  if (st.ok()) {
    Hosted& h = actors_[actor_id];
    h.class_name = class_name;
    h.name = restore.getName();
    h.constructor_args = parts[0];
    h.instance = std::move(instance);
    h.moved_to.clear();
    st = DecodeOrderTable(parts[2], &h);
    LOG(INFO) << "restored actor " << actor_id << " (" << class_name << ")";
  }
  ReplyOnCalls(msg, st);
}

}  // namespace tlt
