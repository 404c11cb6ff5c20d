#include "runtime/actor_info.h"

#include <algorithm>
#include <cctype>

namespace tlt {

const char* ActorStateName(ActorState state) {
  switch (state) {
    case ActorState::kPendingCreation: return "PENDING_CREATION";
    case ActorState::kAlive: return "ALIVE";
    case ActorState::kRestarting: return "RESTARTING";
    case ActorState::kMigrating: return "MIGRATING";
    case ActorState::kDead: return "DEAD";
  }
  return "UNKNOWN";
}

Result<ActorState> ParseActorState(const std::string& name) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  for (auto s : {ActorState::kPendingCreation, ActorState::kAlive, ActorState::kRestarting,
                 ActorState::kMigrating, ActorState::kDead}) {
    if (upper == ActorStateName(s)) return s;
  }
  return InvalidArgument("unknown actor state '" + name +
                         "' (use PENDING_CREATION, ALIVE, RESTARTING, MIGRATING or DEAD)");
}

bool IsValidTransition(ActorState from, ActorState to) {
  using S = ActorState;
  switch (from) {
    case S::kPendingCreation: return to == S::kAlive || to == S::kRestarting || to == S::kDead;
    case S::kAlive: return to == S::kRestarting || to == S::kMigrating || to == S::kDead;
    case S::kRestarting: return to == S::kAlive || to == S::kDead;
    case S::kMigrating: return to == S::kAlive || to == S::kRestarting || to == S::kDead;
    case S::kDead: return false;
  }
  return false;
}

}  // namespace tlt
