// Message plumbing of the controller: socket, dispatch, queries. The actor lifecycle
// (placement, workers, restarts, migration) is in controller_lifecycle.cc.
#include "runtime/controller.h"

#include <glog/logging.h>
#include <unistd.h>

#include <random>

#include "runtime/protocol_convert.h"

namespace tlt {

namespace {
bool IsLoopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1";
}
constexpr size_t kEventsPerActor = 64;
constexpr size_t kEventLogSize = 10000;
}  // namespace

Controller::Controller(ControllerOptions options, EventLoop* loop, Clock* clock)
    : options_(std::move(options)), loop_(loop), clock_(clock) {}

Controller::~Controller() = default;

std::string Controller::endpoint() const {
  return "tcp://" + options_.bind_host + ":" + std::to_string(port_);
}

Status Controller::Start() {
  if (!IsLoopback(options_.bind_host) && options_.token.empty())
    return InvalidArgument("binding the head to " + options_.bind_host +
                           " needs a cluster token: pass --token T (nodes and drivers must "
                           "present the same token)");
  socket_ = std::make_unique<zmq::socket_t>(ZmqContext(), zmq::socket_type::router);
  socket_->set(zmq::sockopt::linger, 0);
  socket_->set(zmq::sockopt::router_mandatory, true);
  try {
    socket_->bind("tcp://" + options_.bind_host + ":" +
                  (options_.port ? std::to_string(options_.port) : std::string("0")));
  } catch (const zmq::error_t& e) {
    return Unavailable("cannot bind the head to " + options_.bind_host + ":" +
                       std::to_string(options_.port) + ": " + e.what() +
                       " (is another head running there? try --port)");
  }
  std::string bound = BoundEndpoint(*socket_);
  port_ = std::stoi(bound.substr(bound.rfind(':') + 1));
  loop_->Watch(socket_.get(), [this] { OnSocket(); });
  loop_->Every(std::chrono::milliseconds(100), [this] { CheckHeartbeats(); });
  LOG(INFO) << "head listening on " << endpoint()
            << (options_.token.empty() ? "" : " (cluster token required)");
  return Status::OK();
}

std::string Controller::NewId(const char* prefix) {
  static std::mt19937_64 rng(std::random_device{}() ^ (uint64_t(getpid()) << 32));
  char buf[32];
  snprintf(buf, sizeof buf, "%s%06llx%04llx", prefix,
           static_cast<unsigned long long>(rng() & 0xffffff),
           static_cast<unsigned long long>(++id_counter_ & 0xffff));
  return buf;
}

void Controller::OnSocket() {
  for (int i = 0; i < 1000; ++i) {
    auto received = Receive(*socket_, /*routed=*/true);
    if (!received.ok()) {
      if (received.status().code() == ErrorCode::kMalformed)
        LOG(WARNING) << "head dropped malformed bytes: " << received.status().message();
      if (received.status().code() == ErrorCode::kUnavailable) return;
      continue;
    }
    const InMessage& msg = **received;
    try {
      if (!options_.token.empty() && msg.envelope().getToken() != options_.token) {
        LOG(WARNING) << "head refused a message from '" << msg.routing_id()
                     << "': wrong or missing cluster token";
        if (msg.envelope().getBody().which() != proto::Envelope::Body::REPLY)
          Reply(msg.routing_id(), msg.envelope().getRequestId(),
                Status(ErrorCode::kUnauthenticated,
                       "wrong or missing cluster token: pass the head's --token"));
        continue;
      }
      Dispatch(msg);
    } catch (const kj::Exception& e) {
      LOG(WARNING) << "head dropped a malformed message from '" << msg.routing_id()
                   << "': " << e.getDescription().cStr();
    }
  }
}

void Controller::Dispatch(const InMessage& msg) {
  using B = proto::Envelope::Body;
  switch (msg.envelope().getBody().which()) {
    case B::REGISTER_NODE: return OnRegisterNode(msg);
    case B::HEARTBEAT: return OnHeartbeat(msg);
    case B::REGISTER_WORKER: return OnRegisterWorker(msg);
    case B::WORKER_EXITED: return OnWorkerExited(msg);
    case B::CREATE_ACTOR: return OnCreateActor(msg);
    case B::LOOKUP_ACTOR: return OnLookupActor(msg);
    case B::KILL_ACTOR: return OnKillActor(msg);
    case B::MIGRATE_ACTOR: return OnMigrateActor(msg);
    case B::LIST_ACTORS: return OnListActors(msg);
    case B::CLUSTER_STATUS: return OnClusterStatus(msg);
    case B::LIST_EVENTS: return OnListEvents(msg);
    case B::CREATE_GROUP: return OnCreateGroup(msg);
    case B::REMOVE_GROUP: return OnRemoveGroup(msg);
    case B::SHUTDOWN: return OnShutdown(msg);
    case B::REPLY: return OnReply(msg);
    default:
      LOG(WARNING) << "head: message kind " << int(msg.envelope().getBody().which())
                   << " from '" << msg.routing_id() << "' is not for the head; dropped";
      Reply(msg.routing_id(), msg.envelope().getRequestId(),
            Status(ErrorCode::kMalformed, "the head does not take this message kind"));
  }
}

void Controller::SendTo(const std::string& routing_id, OutMessage& out) {
  out.envelope().setToken(options_.token);
  Status st = Send(*socket_, &routing_id, out);
  if (!st.ok()) VLOG(1) << "head: send to '" << routing_id << "' failed: " << st.ToString();
}

void Controller::Reply(const std::string& to, uint64_t request_id, const Status& status,
                       const std::function<void(proto::Reply::Builder)>& fill) {
  OutMessage out;
  out.envelope().setRequestId(request_id);
  auto reply = out.envelope().getBody().initReply();
  reply.setCode(static_cast<uint8_t>(status.code()));
  reply.setMessage(status.message());
  if (fill) fill(reply);
  SendTo(to, out);
}

void Controller::SendRequest(const std::string& routing_id, OutMessage& out,
                             std::function<void(const Status&, const InMessage*)> on_reply) {
  uint64_t id = next_request_id_++;
  out.envelope().setRequestId(id);
  pending_replies_[id] = std::move(on_reply);
  SendTo(routing_id, out);
}

void Controller::OnReply(const InMessage& msg) {
  auto it = pending_replies_.find(msg.envelope().getRequestId());
  if (it == pending_replies_.end()) return;
  auto callback = std::move(it->second);
  pending_replies_.erase(it);
  auto r = msg.envelope().getBody().getReply();
  callback(Status(static_cast<ErrorCode>(r.getCode()), r.getMessage()), &msg);
}

void Controller::OnRegisterNode(const InMessage& msg) {
  auto reg = msg.envelope().getBody().getRegisterNode();
  std::string node_id = reg.getNodeId();
  NodeRecord& node = nodes_[node_id];
  const bool rejoin = !node.info.node_id.empty();
  node.routing_id = msg.routing_id();
  node.info.node_id = node_id;
  node.info.address = reg.getAddress();
  node.info.alive = true;
  node.info.pid = reg.getPid();
  node.info.total = FromProto(reg.getResources());
  if (!rejoin) node.info.available = node.info.total;
  node.info.last_heartbeat_ms = clock_->NowMs();
  LOG(INFO) << "node " << node_id << " joined from " << node.info.address << ": "
            << node.info.total.cpus << " CPUs, " << node.info.total.gpus.size() << " GPUs";
  AddEvent(nullptr, "", "NODE_ADDED", node_id + " at " + node.info.address);
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK(),
        [&](proto::Reply::Builder r) { r.setHeadPort(port_); });
  RetryPending();
}

void Controller::OnHeartbeat(const InMessage& msg) {
  auto it = nodes_.find(msg.envelope().getBody().getHeartbeat().getNodeId());
  if (it == nodes_.end() || !it->second.info.alive) return;
  it->second.info.last_heartbeat_ms = clock_->NowMs();
}

void Controller::CheckHeartbeats() {
  const int64_t now = clock_->NowMs();
  for (auto& [node_id, node] : nodes_) {
    if (!node.info.alive || now - node.info.last_heartbeat_ms <= options_.heartbeat_timeout_ms)
      continue;
    node.info.alive = false;
    const std::string cause = "node " + node_id + " died (no heartbeat for " +
                              std::to_string(now - node.info.last_heartbeat_ms) + " ms)";
    LOG(WARNING) << cause;
    AddEvent(nullptr, "", "NODE_DEAD", cause);
    std::vector<std::string> gone;
    for (auto& [wid, w] : workers_)
      if (w.node_id == node_id) gone.push_back(wid);
    for (const auto& wid : gone) WorkerGone(wid, cause);
  }
}

void Controller::FillActor(const ActorRecord& actor, bool with_events,
                           proto::ActorInfo::Builder out) {
  ActorInfo info = actor.info;
  if (with_events) info.events.assign(actor.events.begin(), actor.events.end());
  ToProto(info, out);
}

void Controller::OnLookupActor(const InMessage& msg) {
  auto lookup = msg.envelope().getBody().getLookupActor();
  std::string id = lookup.getActorId();
  if (id.empty()) {
    auto n = names_.find(lookup.getName());
    if (n != names_.end()) id = n->second;
    // A name may also be an id prefix typed by a person.
    if (id.empty()) {
      for (const auto& [aid, a] : actors_)
        if (!std::string(lookup.getName()).empty() &&
            (aid == std::string(lookup.getName()) || a.info.name == std::string(lookup.getName())))
          id = aid;
    }
  }
  auto it = actors_.find(id);
  if (it == actors_.end()) {
    Reply(msg.routing_id(), msg.envelope().getRequestId(),
          NotFound("no actor with id or name '" +
                   std::string(id.empty() ? lookup.getName().cStr() : id) + "'"));
    return;
  }
  ActorRecord& actor = it->second;
  actor.subscribers.insert(msg.routing_id());
  const ActorState s = actor.info.state;
  const bool settled = s == ActorState::kAlive || s == ActorState::kDead;
  if (lookup.getWaitUntilSettled() && !settled) {
    actor.parked.push_back({msg.routing_id(), msg.envelope().getRequestId(), lookup.getWithEvents()});
    return;
  }
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK(),
        [&](proto::Reply::Builder r) { FillActor(actor, lookup.getWithEvents(), r.initActor()); });
}

void Controller::OnListActors(const InMessage& msg) {
  int filter = msg.envelope().getBody().getListActors().getStateFilter();
  std::vector<const ActorRecord*> selected;
  for (const auto& [id, a] : actors_)
    if (filter < 0 || int(a.info.state) == filter) selected.push_back(&a);
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK(),
        [&](proto::Reply::Builder r) {
          auto list = r.initActors(selected.size());
          for (unsigned i = 0; i < selected.size(); ++i) FillActor(*selected[i], false, list[i]);
        });
}

void Controller::OnClusterStatus(const InMessage& msg) {
  std::map<std::string, int> actors_per_node;
  for (const auto& [id, a] : actors_)
    if (a.info.state != ActorState::kDead) actors_per_node[a.info.node_id]++;
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK(),
        [&](proto::Reply::Builder r) {
          auto nodes = r.initNodes(nodes_.size());
          unsigned i = 0;
          for (auto& [id, n] : nodes_) {
            n.info.num_actors = actors_per_node[id];
            ToProto(n.info, nodes[i++]);
          }
          auto actors = r.initActors(actors_.size());
          i = 0;
          for (const auto& [id, a] : actors_) FillActor(a, false, actors[i++]);
          r.setHeadPort(port_);
          r.setHeadPid(getpid());
        });
}

void Controller::OnListEvents(const InMessage& msg) {
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK(),
        [&](proto::Reply::Builder r) {
          auto events = r.initEvents(event_log_.size());
          for (unsigned i = 0; i < event_log_.size(); ++i) ToProto(event_log_[i], events[i]);
        });
}

void Controller::OnShutdown(const InMessage& msg) {
  LOG(INFO) << "head: shutdown requested by '" << msg.routing_id() << "'";
  shutting_down_ = true;
  for (auto& [id, node] : nodes_) {
    if (!node.info.alive) continue;
    OutMessage out;
    out.envelope().getBody().setShutdown();
    SendTo(node.routing_id, out);
  }
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK());
  // Give node agents a moment to receive it before the socket closes.
  loop_->After(std::chrono::milliseconds(300), [this] { loop_->Stop(); });
}

void Controller::AddEvent(ActorRecord* actor, const std::string& actor_id,
                          const std::string& kind, const std::string& detail) {
  ActorEvent e{clock_->WallMs(), actor_id, kind, detail};
  if (actor) {
    actor->events.push_back(e);
    if (actor->events.size() > kEventsPerActor) actor->events.pop_front();
  }
  event_log_.push_back(std::move(e));
  if (event_log_.size() > kEventLogSize) event_log_.pop_front();
}

std::vector<NodeView> Controller::NodeViews(const std::string& exclude_node) const {
  std::map<std::string, int> actors_per_node;
  for (const auto& [id, a] : actors_)
    if (a.info.state != ActorState::kDead) actors_per_node[a.info.node_id]++;
  std::vector<NodeView> views;
  for (const auto& [id, n] : nodes_) {
    if (id == exclude_node) continue;
    NodeView v;
    v.node_id = id;
    v.alive = n.info.alive;
    v.total = n.info.total;
    v.available = n.info.available;
    auto c = actors_per_node.find(id);
    v.num_actors = c == actors_per_node.end() ? 0 : c->second;
    views.push_back(std::move(v));
  }
  return views;
}

}  // namespace tlt
