// Cluster: what a driver program uses. Connects to a cluster (or starts an embedded one),
// creates actors, calls them through typed handles, inspects, kills and migrates them.
//
//   int main(int argc, char** argv) {
//     tlt::Init(argc, argv);                     // first line: worker processes stop here
//     auto cluster = tlt::Cluster::Connect({}).value();   // no address: embedded head
//     auto counter = cluster->Create<Counter>(tlt::ActorOptions().Name("c"), 10).value();
//     int64_t v = counter.Call(&Counter::Add, 5).Get().value();   // 15
//   }
//
// A handle's Call() checks at compile time that the arguments convert to the method's
// parameters; the result arrives as Future<X> where X is what the method returns (Void for
// void and Status). Errors (actor dead, method threw, timeout) are Status values.
// Cluster and handles are thread-safe. Destroying an embedded Cluster stops its head,
// node and every worker; for a remote cluster it kills the actors it created unless they
// were created detached.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime/actor.h"
#include "runtime/actor_info.h"
#include "runtime/client.h"
#include "runtime/resources.h"

namespace tlt {

// Must be the first call in main() of every program that creates actors: in a worker
// process it runs the worker and exits; otherwise it sets up logging and returns.
void Init(int argc, char** argv);

// The absolute path of the running program (what workers of its actors run).
std::string CurrentExecutable();

struct ActorOptions {
  std::string name;
  ResourceRequest resources;
  PlacementOptions placement;
  int max_restarts = 0;      // -1: unlimited
  int max_task_retries = 0;  // -1: unlimited
  bool detached = false;
  std::string executable;    // default: this program

  ActorOptions& Name(std::string n) { name = std::move(n); return *this; }
  ActorOptions& Cpus(double n) { resources.cpus = n; return *this; }
  ActorOptions& Gpus(int n) { resources.gpus = n; return *this; }
  ActorOptions& GpuType(std::string t) { resources.gpu_type = std::move(t); return *this; }
  ActorOptions& GpuMemory(uint64_t bytes) { resources.gpu_memory_bytes = bytes; return *this; }
  ActorOptions& Custom(const std::string& k, double v) { resources.custom[k] = v; return *this; }
  ActorOptions& Strategy(PlacementStrategy s) { placement.strategy = s; return *this; }
  ActorOptions& OnNode(std::string node, bool soft = false) {
    placement.strategy = PlacementStrategy::kNodeAffinity;
    placement.node_id = std::move(node);
    placement.soft = soft;
    return *this;
  }
  ActorOptions& InGroup(std::string group, int bundle = -1) {
    placement.group_id = std::move(group);
    placement.bundle_index = bundle;
    return *this;
  }
  ActorOptions& MaxRestarts(int n) { max_restarts = n; return *this; }
  ActorOptions& MaxTaskRetries(int n) { max_task_retries = n; return *this; }
  ActorOptions& Detached(bool d = true) { detached = d; return *this; }
};

template <typename T>
class ActorHandle {
 public:
  ActorHandle() = default;
  ActorHandle(std::string actor_id, std::shared_ptr<Client> client)
      : actor_id_(std::move(actor_id)), client_(std::move(client)) {}

  const std::string& id() const { return actor_id_; }
  bool valid() const { return client_ != nullptr; }

  template <typename R, typename... P, typename... A>
  Future<CallValueT<R>> Call(R (T::*method)(P...), A&&... args) const {
    return CallNamed<R, P...>(method, std::forward<A>(args)...);
  }
  template <typename R, typename... P, typename... A>
  Future<CallValueT<R>> Call(R (T::*method)(P...) const, A&&... args) const {
    return CallNamed<R, P...>(method, std::forward<A>(args)...);
  }

 private:
  template <typename R, typename... P, typename M, typename... A>
  Future<CallValueT<R>> CallNamed(M method, A&&... args) const {
    static_assert(sizeof...(P) == sizeof...(A), "wrong number of arguments for this method");
    using V = CallValueT<R>;
    Promise<V> promise;
    auto* cls = ActorClassSlot<T>();
    if (!cls) {
      promise.Set(Status(ErrorCode::kUnknownMethod, "actor class not registered: use TLT_ACTOR"));
      return promise.GetFuture();
    }
    auto name = cls->NameOf(method);
    if (!name.ok()) {
      promise.Set(name.status());
      return promise.GetFuture();
    }
    Payload payload = EncodeTuple(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
    client_->Call(actor_id_, *name, std::move(payload), [promise](Result<Payload> r) {
      if (!r.ok()) return promise.Set(r.status());
      V value{};
      Status st = DecodePayload(*r, &value);
      if (!st.ok()) return promise.Set(st.WithContext("result"));
      promise.Set(std::move(value));
    });
    return promise.GetFuture();
  }

  std::string actor_id_;
  std::shared_ptr<Client> client_;
};

struct ClusterStatus {
  int head_pid = 0;
  std::vector<NodeInfo> nodes;
  std::vector<ActorInfo> actors;
};

class Cluster {
 public:
  struct Options {
    std::string address;         // "host:port"; empty: start an embedded head and node
    std::string token;
    std::string simulated_gpus;  // embedded node only: "TYPE:N[,TYPE:N]"
    double cpus = 0;             // embedded node only; 0: the host's cores
    std::string log_dir;         // embedded: where worker logs go (default /tmp/tlt-logs)
    Millis connect_timeout = Millis(5000);
  };

  static Result<std::unique_ptr<Cluster>> Connect(Options options);
  ~Cluster();

  template <typename T, typename... A>
  Result<ActorHandle<T>> Create(const ActorOptions& options, A&&... args) {
    auto* cls = ActorClassSlot<T>();
    if (!cls) return InvalidArgument("actor class not registered: add TLT_ACTOR(...) for it");
    auto id = CreateActor(cls->name(), cls->checkpointable(), options,
                          EncodeTuple(std::forward<A>(args)...));
    if (!id.ok()) return id.status();
    return ActorHandle<T>(*id, client_);
  }
  // A handle to an existing actor by name or id.
  template <typename T>
  Result<ActorHandle<T>> Get(const std::string& name_or_id) {
    ASSIGN_OR_RETURN(ActorInfo info, GetActor(name_or_id));
    return ActorHandle<T>(info.actor_id, client_);
  }

  // Waits until the actor is ALIVE (or DEAD: then kActorDied with the cause).
  Result<ActorInfo> WaitReady(const std::string& actor_id, Millis timeout = Millis(60000));
  Result<ActorInfo> GetActor(const std::string& name_or_id, bool with_events = false);
  Result<std::vector<ActorInfo>> ListActors(std::optional<ActorState> state = std::nullopt);
  Result<ClusterStatus> Status();
  Result<std::vector<ActorEvent>> Events();
  ::tlt::Status Kill(const std::string& actor_id, bool no_restart = true);
  // Moves an ALIVE, checkpointable actor to another worker (on `target_node` if given).
  // Returns the actor's new info; callers keep their handles.
  Result<ActorInfo> Migrate(const std::string& actor_id, const std::string& target_node = "");
  Result<std::string> CreatePlacementGroup(const std::vector<ResourceRequest>& bundles,
                                           GroupStrategy strategy);
  ::tlt::Status RemovePlacementGroup(const std::string& group_id);
  // Stops every process of the cluster (tlt stop).
  ::tlt::Status Shutdown();

  const std::string& address() const { return address_; }
  std::shared_ptr<Client> client() const { return client_; }

 private:
  Cluster() = default;
  Result<std::string> CreateActor(const std::string& class_name, bool checkpointable,
                                  const ActorOptions& options, Payload args);

  struct Embedded;
  std::unique_ptr<Embedded> embedded_;
  std::shared_ptr<Client> client_;
  std::string address_;
  std::vector<std::string> owned_actors_;
  std::mutex owned_mutex_;
};

}  // namespace tlt

namespace tlt {
// The process's client for handles that arrive as arguments (in a worker: connects to the
// worker's head on first use). Null if none can be had.
std::shared_ptr<Client> ProcessClient();

// Handles travel as arguments: an actor can call actors it was given.
template <typename T>
struct Codec<ActorHandle<T>> {
  static constexpr const char* kName = "ActorHandle";
  static void Encode(Encoder& e, const ActorHandle<T>& h) {
    e.BeginExternal("ActorHandle");
    e.String(h.id());
  }
  static Status Decode(Decoder& d, ActorHandle<T>* out) {
    RETURN_NOT_OK(d.BeginExternal("ActorHandle"));
    std::string id;
    RETURN_NOT_OK(d.String(&id));
    auto client = ProcessClient();
    if (!client) return Unavailable("no cluster connection in this process for an actor handle");
    *out = ActorHandle<T>(id, client);
    return Status::OK();
  }
};
}  // namespace tlt
