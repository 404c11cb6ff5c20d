# Wire protocol of the tlt runtime: every control and call envelope is one of these.
# A message on the wire is [Envelope (packed? no: flat Cap'n Proto words)] followed by
# zero or more payload frames (large byte buffers, zero-copy). Envelope.payload carries the
# codec's inline bytes; Buffer values in it refer to the frames by index.
@0xd1c5f3b0a6e94c27;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tlt::proto");

struct GpuInfo {
  index @0 :Int32;
  type @1 :Text;
  memoryBytes @2 :UInt64;
  simulated @3 :Bool;
}

struct CustomAmount {
  name @0 :Text;
  amount @1 :Float64;
}

struct Resources {
  cpus @0 :Float64;
  gpus @1 :List(GpuInfo);
  custom @2 :List(CustomAmount);
}

struct ResourceRequest {
  cpus @0 :Float64;
  gpus @1 :Int32;
  gpuType @2 :Text;
  gpuMemoryBytes @3 :UInt64;
  custom @4 :List(CustomAmount);
}

struct PlacementOptions {
  strategy @0 :UInt8;
  nodeId @1 :Text;
  soft @2 :Bool;
  groupId @3 :Text;
  bundleIndex @4 :Int32 = -1;
}

# What the driver asks for when creating an actor. Constructor arguments travel as the
# envelope's payload.
struct ActorSpec {
  className @0 :Text;
  name @1 :Text;
  resources @2 :ResourceRequest;
  placement @3 :PlacementOptions;
  maxRestarts @4 :Int32;
  maxTaskRetries @5 :Int32;
  executable @6 :Text;      # the program whose workers can host this class
  detached @7 :Bool;        # outlives the driver that created it
  checkpointable @8 :Bool;  # implements checkpoint/restore: can migrate
  ownerId @9 :Text;         # client that created it (non-detached actors die with it)
}

struct Event {
  timeMs @0 :Int64;
  actorId @1 :Text;
  kind @2 :Text;            # a state name or "MIGRATED", "NODE_DEAD", ...
  detail @3 :Text;
}

struct ActorInfo {
  actorId @0 :Text;
  name @1 :Text;
  className @2 :Text;
  state @3 :UInt8;          # ActorState
  nodeId @4 :Text;
  workerId @5 :Text;
  endpoint @6 :Text;        # where calls go while ALIVE
  pid @7 :Int32;
  restarts @8 :Int32;
  maxRestarts @9 :Int32;
  maxTaskRetries @10 :Int32;
  deathCause @11 :Text;
  gpuIndices @12 :List(Int32);
  gpuType @13 :Text;
  events @14 :List(Event);
  createdMs @15 :Int64;
  checkpointable @16 :Bool;
}

struct NodeInfo {
  nodeId @0 :Text;
  address @1 :Text;
  alive @2 :Bool;
  total @3 :Resources;
  available @4 :Resources;
  numActors @5 :Int32;
  lastHeartbeatMs @6 :Int64;
  pid @7 :Int32;
}

struct Call {
  actorId @0 :Text;
  method @1 :Text;
  callerId @2 :Text;
  seq @3 :UInt64;           # per (caller, actor), from 1, for ordering and exactly-once
}

struct Reply {
  code @0 :UInt8;           # ErrorCode
  message @1 :Text;
  movedTo @2 :Text;         # with kMoved: the new endpoint when known
  actor @3 :ActorInfo;
  actors @4 :List(ActorInfo);
  nodes @5 :List(NodeInfo);
  events @6 :List(Event);
  elapsedUs @7 :Int64;      # server-side timing (migration)
  headPort @8 :Int32;
  groupId @9 :Text;
  headPid @10 :Int32;
}

# A placement group: bundles reserved all-or-nothing, for actors to be placed into.
struct CreateGroup {
  bundles @0 :List(ResourceRequest);
  strategy @1 :UInt8;       # GroupStrategy
}

struct RegisterNode {
  nodeId @0 :Text;
  address @1 :Text;         # host the node's workers bind
  resources @2 :Resources;
  pid @3 :Int32;
}

struct Heartbeat {
  nodeId @0 :Text;
}

struct RegisterWorker {
  workerId @0 :Text;
  nodeId @1 :Text;
  endpoint @2 :Text;
  pid @3 :Int32;
}

struct WorkerExited {
  workerId @0 :Text;
  nodeId @1 :Text;
  exitCode @2 :Int32;
  signal @3 :Int32;
}

struct LookupActor {
  actorId @0 :Text;
  name @1 :Text;
  waitUntilSettled @2 :Bool;  # park until ALIVE or DEAD
  withEvents @3 :Bool;
}

struct KillActor {
  actorId @0 :Text;
  noRestart @1 :Bool;
}

struct MigrateActor {
  actorId @0 :Text;
  targetNodeId @1 :Text;      # empty: any other node that fits
}

struct ListActors {
  stateFilter @0 :Int16 = -1;
}

struct StartWorker {
  workerId @0 :Text;
  executable @1 :Text;
  gpuIndices @2 :List(Int32);
}

struct StopWorker {
  workerId @0 :Text;
}

# Head -> worker: construct an actor (constructor arguments in the payload).
struct HostActor {
  actorId @0 :Text;
  className @1 :Text;
  name @2 :Text;
}

# Head -> old worker: checkpoint the actor and hand it to the new worker directly.
struct MoveOut {
  actorId @0 :Text;
  targetEndpoint @1 :Text;
}

# Worker -> worker: the checkpoint (payload) of a moving actor.
struct RestoreActor {
  actorId @0 :Text;
  className @1 :Text;
  name @2 :Text;
}

struct Envelope {
  token @0 :Text;
  requestId @1 :UInt64;
  payload @2 :Data;
  body :union {
    call @3 :Call;
    reply @4 :Reply;
    registerNode @5 :RegisterNode;
    heartbeat @6 :Heartbeat;
    registerWorker @7 :RegisterWorker;
    workerExited @8 :WorkerExited;
    createActor @9 :ActorSpec;
    lookupActor @10 :LookupActor;
    killActor @11 :KillActor;
    migrateActor @12 :MigrateActor;
    listActors @13 :ListActors;
    clusterStatus @14 :Void;
    shutdown @15 :Void;
    startWorker @16 :StartWorker;
    stopWorker @17 :StopWorker;
    hostActor @18 :HostActor;
    moveOut @19 :MoveOut;
    restoreActor @20 :RestoreActor;
    actorUpdate @21 :ActorInfo;
    listEvents @22 :Void;
    createGroup @23 :CreateGroup;
    removeGroup @24 :Text;
  }
}
