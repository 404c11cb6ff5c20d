// What the cluster knows about an actor and a node: states, events, info records.
//
// ActorState follows Ray's names. The allowed transitions are
//   PENDING_CREATION -> ALIVE | RESTARTING | DEAD
//   ALIVE            -> RESTARTING | MIGRATING | DEAD
//   RESTARTING       -> ALIVE | DEAD
//   MIGRATING        -> ALIVE | RESTARTING | DEAD
// and DEAD is final. The controller checks every change with IsValidTransition.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/resources.h"
#include "runtime/status.h"

namespace tlt {

enum class ActorState : uint8_t {
  kPendingCreation = 0,
  kAlive = 1,
  kRestarting = 2,
  kMigrating = 3,
  kDead = 4,
};

const char* ActorStateName(ActorState state);  // "PENDING_CREATION", "ALIVE", ...
Result<ActorState> ParseActorState(const std::string& name);  // case-insensitive
bool IsValidTransition(ActorState from, ActorState to);

struct ActorEvent {
  int64_t time_ms = 0;  // Unix epoch milliseconds
  std::string actor_id;
  std::string kind;     // state name, "MIGRATED", "CALL_RETRIED", ...
  std::string detail;
};

struct ActorInfo {
  std::string actor_id;
  std::string name;
  std::string class_name;
  ActorState state = ActorState::kPendingCreation;
  std::string node_id;
  std::string worker_id;
  std::string endpoint;
  int pid = 0;
  int restarts = 0;
  int max_restarts = 0;
  int max_task_retries = 0;
  std::string death_cause;
  std::vector<int> gpu_indices;
  std::string gpu_type;
  int64_t created_ms = 0;
  bool checkpointable = false;
  std::vector<ActorEvent> events;  // recent events, oldest first (when asked for)
};

struct NodeInfo {
  std::string node_id;
  std::string address;
  bool alive = false;
  NodeResources total;
  NodeResources available;
  int num_actors = 0;
  int64_t last_heartbeat_ms = 0;
  int pid = 0;
};

}  // namespace tlt
