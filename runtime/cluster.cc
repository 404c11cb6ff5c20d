#include "runtime/cluster.h"

#include <glog/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <thread>

#include "runtime/controller.h"
#include "runtime/node_agent.h"
#include "runtime/protocol_convert.h"
#include "runtime/worker.h"

namespace tlt {

std::string CurrentExecutable() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return buf;
}

namespace {

void InitLogging(const char* argv0) {
  static bool done = false;
  if (done) return;
  done = true;
  google::InitGoogleLogging(argv0 ? argv0 : "tlt");
  FLAGS_logtostderr = true;
  if (!std::getenv("GLOG_minloglevel") && !std::getenv("TLT_VERBOSE")) FLAGS_minloglevel = 1;
}

constexpr Millis kControlTimeout(30000);
}  // namespace

void Init(int argc, char** argv) {
  (void)argc;
  if (std::getenv("TLT_WORKER_ID")) {
    InitLogging(argv ? argv[0] : "tlt-worker");
    FLAGS_minloglevel = 0;
    auto options = WorkerOptionsFromEnvironment();
    if (!options.ok()) {
      LOG(ERROR) << options.status().ToString();
      std::exit(2);
    }
    Worker worker(*options);
    std::exit(worker.Run());
  }
  InitLogging(argv ? argv[0] : "tlt");
}

std::shared_ptr<Client> ProcessClient() {
  if (auto c = Client::Default()) return c;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto c = Client::Default()) return c;
  const char* head = std::getenv("TLT_HEAD");
  if (!head) return nullptr;
  const char* token = std::getenv("TLT_TOKEN");
  auto client = std::make_shared<Client>(head, token ? token : "");
  if (!client->Connect(Millis(10000)).ok()) return nullptr;
  Client::SetDefault(client);
  return client;
}

// An embedded head and node, run on one thread of the driver.
struct Cluster::Embedded {
  EventLoop loop;
  std::unique_ptr<Controller> controller;
  std::unique_ptr<NodeAgent> node;
  std::thread thread;
  ~Embedded() {
    loop.Stop();
    if (thread.joinable()) thread.join();
    node.reset();  // kills its workers
  }
};

Result<std::unique_ptr<Cluster>> Cluster::Connect(Options options) {
  std::unique_ptr<Cluster> cluster(new Cluster());
  std::string endpoint;
  if (options.address.empty()) {
    cluster->embedded_ = std::make_unique<Embedded>();
    Embedded& e = *cluster->embedded_;
    ControllerOptions copts;
    copts.token = options.token;
    e.controller = std::make_unique<Controller>(copts, &e.loop, SystemClock::Get());
    RETURN_NOT_OK(e.controller->Start());
    endpoint = e.controller->endpoint();
    NodeAgentOptions nopts;
    nopts.head_endpoint = endpoint;
    nopts.token = options.token;
    nopts.simulated_gpus = options.simulated_gpus;
    nopts.cpus = options.cpus;
    nopts.log_dir = options.log_dir.empty() ? "/tmp/tlt-logs" : options.log_dir;
    mkdir(nopts.log_dir.c_str(), 0755);
    e.node = std::make_unique<NodeAgent>(nopts, &e.loop);
    RETURN_NOT_OK(e.node->Start());
    e.thread = std::thread([&e] { e.loop.Run(); });
  } else {
    endpoint = ToZmqEndpoint(options.address);
  }
  cluster->address_ = endpoint;
  cluster->client_ = std::make_shared<Client>(endpoint, options.token);
  RETURN_NOT_OK(cluster->client_->Connect(options.connect_timeout));
  if (!Client::Default()) Client::SetDefault(cluster->client_);
  if (cluster->embedded_) {
    // Wait until the embedded node has registered, so the first Create can be placed.
    for (int i = 0; i < 200; ++i) {
      auto status = cluster->Status();
      if (status.ok() && !status->nodes.empty()) break;
      std::this_thread::sleep_for(Millis(10));
    }
  }
  return cluster;
}

Cluster::~Cluster() {
  if (!embedded_) {
    std::vector<std::string> owned;
    {
      std::lock_guard<std::mutex> lock(owned_mutex_);
      owned.swap(owned_actors_);
    }
    for (const auto& id : owned) (void)Kill(id, true);
  }
  if (Client::Default() == client_) Client::SetDefault(nullptr);
  client_.reset();
  embedded_.reset();
}

Result<std::string> Cluster::CreateActor(const std::string& class_name, bool checkpointable,
                                         const ActorOptions& options, Payload args) {
  auto out = std::make_unique<OutMessage>();
  auto spec = out->envelope().getBody().initCreateActor();
  spec.setClassName(class_name);
  spec.setName(options.name);
  ToProto(options.resources, spec.initResources());
  ToProto(options.placement, spec.initPlacement());
  spec.setMaxRestarts(options.max_restarts);
  spec.setMaxTaskRetries(options.max_task_retries);
  spec.setExecutable(options.executable.empty() ? CurrentExecutable() : options.executable);
  spec.setDetached(options.detached);
  spec.setCheckpointable(checkpointable);
  spec.setOwnerId(client_->client_id());
  out->set_payload(std::move(args));
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), kControlTimeout));
  auto reply = message->envelope().getBody().getReply();
  std::string id = reply.getActor().getActorId();
  if (!options.detached) {
    std::lock_guard<std::mutex> lock(owned_mutex_);
    owned_actors_.push_back(id);
  }
  return id;
}

Result<ActorInfo> Cluster::GetActor(const std::string& name_or_id, bool with_events) {
  auto out = std::make_unique<OutMessage>();
  auto lookup = out->envelope().getBody().initLookupActor();
  lookup.setName(name_or_id);  // the head matches names and ids
  lookup.setWithEvents(with_events);
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), kControlTimeout));
  return FromProto(message->envelope().getBody().getReply().getActor());
}

Result<ActorInfo> Cluster::WaitReady(const std::string& actor_id, Millis timeout) {
  auto out = std::make_unique<OutMessage>();
  auto lookup = out->envelope().getBody().initLookupActor();
  lookup.setActorId(actor_id);
  lookup.setWaitUntilSettled(true);
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), timeout));
  auto reply = message->envelope().getBody().getReply();
  ActorInfo info = FromProto(reply.getActor());
  if (info.state == ActorState::kDead)
    return ::tlt::Status(ErrorCode::kActorDied, "actor " + actor_id + " is dead: " + info.death_cause);
  return info;
}

Result<std::vector<ActorInfo>> Cluster::ListActors(std::optional<ActorState> state) {
  auto out = std::make_unique<OutMessage>();
  out->envelope().getBody().initListActors().setStateFilter(state ? int(*state) : -1);
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), kControlTimeout));
  auto reply = message->envelope().getBody().getReply();
  std::vector<ActorInfo> actors;
  for (auto a : reply.getActors()) actors.push_back(FromProto(a));
  return actors;
}

Result<ClusterStatus> Cluster::Status() {
  auto out = std::make_unique<OutMessage>();
  out->envelope().getBody().setClusterStatus();
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), kControlTimeout));
  auto reply = message->envelope().getBody().getReply();
  ClusterStatus status;
  status.head_pid = reply.getHeadPid();
  for (auto n : reply.getNodes()) status.nodes.push_back(FromProto(n));
  for (auto a : reply.getActors()) status.actors.push_back(FromProto(a));
  return status;
}

Result<std::vector<ActorEvent>> Cluster::Events() {
  auto out = std::make_unique<OutMessage>();
  out->envelope().getBody().setListEvents();
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), kControlTimeout));
  auto reply = message->envelope().getBody().getReply();
  std::vector<ActorEvent> events;
  for (auto e : reply.getEvents()) events.push_back(FromProto(e));
  return events;
}

Status Cluster::Kill(const std::string& actor_id, bool no_restart) {
  auto out = std::make_unique<OutMessage>();
  auto kill = out->envelope().getBody().initKillActor();
  kill.setActorId(actor_id);
  kill.setNoRestart(no_restart);
  return client_->Request(std::move(out), kControlTimeout).status();
}

Result<ActorInfo> Cluster::Migrate(const std::string& actor_id, const std::string& target_node) {
  auto out = std::make_unique<OutMessage>();
  auto m = out->envelope().getBody().initMigrateActor();
  m.setActorId(actor_id);
  m.setTargetNodeId(target_node);
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), Millis(300000)));
  auto reply = message->envelope().getBody().getReply();
  return FromProto(reply.getActor());
}

Result<std::string> Cluster::CreatePlacementGroup(const std::vector<ResourceRequest>& bundles,
                                                  GroupStrategy strategy) {
  auto out = std::make_unique<OutMessage>();
  auto g = out->envelope().getBody().initCreateGroup();
  auto list = g.initBundles(bundles.size());
  for (unsigned i = 0; i < bundles.size(); ++i) ToProto(bundles[i], list[i]);
  g.setStrategy(static_cast<uint8_t>(strategy));
  ASSIGN_OR_RETURN(auto message, client_->Request(std::move(out), kControlTimeout));
  auto reply = message->envelope().getBody().getReply();
  return std::string(reply.getGroupId());
}

Status Cluster::RemovePlacementGroup(const std::string& group_id) {
  auto out = std::make_unique<OutMessage>();
  out->envelope().getBody().setRemoveGroup(group_id);
  return client_->Request(std::move(out), kControlTimeout).status();
}

Status Cluster::Shutdown() {
  auto out = std::make_unique<OutMessage>();
  out->envelope().getBody().setShutdown();
  return client_->Request(std::move(out), kControlTimeout).status();
}

}  // namespace tlt
