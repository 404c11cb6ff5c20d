// Actor lifecycle in the controller: creation, placement, workers, restarts, kills,
// migration and placement groups.
#include <glog/logging.h>

#include <algorithm>

#include "runtime/controller.h"
#include "runtime/protocol_convert.h"

namespace tlt {

void Controller::SetState(ActorRecord& actor, ActorState state, const std::string& detail) {
  const ActorState from = actor.info.state;
  if (from == state) return;
  if (!IsValidTransition(from, state)) {
    LOG(ERROR) << "actor " << actor.info.actor_id << ": invalid transition "
               << ActorStateName(from) << " -> " << ActorStateName(state) << " ignored";
    return;
  }
  actor.info.state = state;
  AddEvent(&actor, actor.info.actor_id, ActorStateName(state), detail);
  VLOG(1) << "actor " << actor.info.actor_id << " " << ActorStateName(from) << " -> "
          << ActorStateName(state) << (detail.empty() ? "" : ": " + detail);
  if (state == ActorState::kDead) {
    actor.info.death_cause = detail;
    auto n = names_.find(actor.info.name);
    if (n != names_.end() && n->second == actor.info.actor_id) names_.erase(n);
  }
  if (state == ActorState::kAlive || state == ActorState::kDead) {
    for (const auto& p : actor.parked)
      Reply(p.routing_id, p.request_id, Status::OK(),
            [&](proto::Reply::Builder r) { FillActor(actor, p.with_events, r.initActor()); });
    actor.parked.clear();
  }
  for (const auto& sub : actor.subscribers) {
    OutMessage out;
    FillActor(actor, false, out.envelope().getBody().initActorUpdate());
    SendTo(sub, out);
  }
}

void Controller::OnCreateActor(const InMessage& msg) {
  auto spec = msg.envelope().getBody().getCreateActor();
  const std::string name = spec.getName();
  if (std::string(spec.getClassName()).empty()) {
    Reply(msg.routing_id(), msg.envelope().getRequestId(), InvalidArgument("actor class name is empty"));
    return;
  }
  if (!name.empty() && names_.count(name)) {
    Reply(msg.routing_id(), msg.envelope().getRequestId(),
          InvalidArgument("an actor named '" + name + "' already exists (id " + names_[name] +
                          "); pick another name or look it up with GetActor"));
    return;
  }
  const std::string id = NewId("a");
  ActorRecord& actor = actors_[id];
  actor.info.actor_id = id;
  actor.info.name = name;
  actor.info.class_name = spec.getClassName();
  actor.info.max_restarts = spec.getMaxRestarts();
  actor.info.max_task_retries = spec.getMaxTaskRetries();
  actor.info.created_ms = clock_->WallMs();
  actor.info.checkpointable = spec.getCheckpointable();
  actor.request = FromProto(spec.getResources());
  actor.placement = FromProto(spec.getPlacement());
  actor.info.gpu_type = actor.request.gpu_type;
  actor.executable = spec.getExecutable();
  actor.constructor_args = msg.payload();
  actor.subscribers.insert(msg.routing_id());
  if (!name.empty()) names_[name] = id;
  AddEvent(&actor, id, ActorStateName(ActorState::kPendingCreation),
           actor.info.class_name + " requested " + DescribeRequest(actor.request));
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK(),
        [&](proto::Reply::Builder r) { FillActor(actor, false, r.initActor()); });
  Schedule(id);
}

Result<Allocation> Controller::PlaceInGroup(ActorRecord& actor) {
  auto g = groups_.find(actor.placement.group_id);
  if (g == groups_.end())
    return Status(ErrorCode::kInfeasible, "no placement group '" + actor.placement.group_id + "'");
  GroupRecord& group = g->second;
  int index = actor.placement.bundle_index;
  if (index >= int(group.bundles.size()))
    return Status(ErrorCode::kInfeasible, "placement group has " +
                                              std::to_string(group.bundles.size()) +
                                              " bundles; index " + std::to_string(index));
  if (index < 0) {
    for (size_t i = 0; i < group.bundle_actor.size(); ++i)
      if (group.bundle_actor[i].empty()) { index = int(i); break; }
  }
  if (index < 0 || !group.bundle_actor[index].empty())
    return Unavailable("every bundle of group " + actor.placement.group_id + " is in use");
  group.bundle_actor[index] = actor.info.actor_id;
  Allocation a = group.allocations[index];
  a.cpus = 0;  // the group holds the reservation; the actor consumes it
  a.custom.clear();
  return a;
}

void Controller::Schedule(const std::string& actor_id) {
  auto it = actors_.find(actor_id);
  if (it == actors_.end()) return;
  ActorRecord& actor = it->second;
  Result<Allocation> placed = actor.placement.group_id.empty()
                                  ? PlaceActor(NodeViews(), actor.request, actor.placement)
                                  : PlaceInGroup(actor);
  if (!placed.ok()) {
    if (placed.status().code() == ErrorCode::kUnavailable || nodes_.empty()) {
      if (std::find(pending_schedule_.begin(), pending_schedule_.end(), actor_id) ==
          pending_schedule_.end()) {
        pending_schedule_.push_back(actor_id);
        AddEvent(&actor, actor_id, "WAITING_FOR_RESOURCES", placed.status().message());
      }
      return;
    }
    SetState(actor, ActorState::kDead, "cannot be placed: " + placed.status().message());
    return;
  }
  Allocation allocation = std::move(placed).value();
  if (actor.placement.group_id.empty()) {
    Status st = Reserve(&nodes_[allocation.node_id].info.available, allocation);
    if (!st.ok()) {
      LOG(ERROR) << "reserve after placement failed: " << st.ToString();
      pending_schedule_.push_back(actor_id);
      return;
    }
  }
  actor.info.node_id = allocation.node_id;
  actor.info.gpu_indices = allocation.gpu_indices;
  StartWorker(allocation.node_id, actor_id, allocation, actor.executable, false);
}

void Controller::RetryPending() {
  std::vector<std::string> waiting;
  waiting.swap(pending_schedule_);
  for (const auto& id : waiting) {
    auto it = actors_.find(id);
    if (it != actors_.end() && it->second.info.state != ActorState::kDead) Schedule(id);
  }
}

std::string Controller::StartWorker(const std::string& node_id, const std::string& actor_id,
                                    const Allocation& allocation, const std::string& executable,
                                    bool migration_target) {
  const std::string worker_id = NewId("w");
  WorkerRecord& w = workers_[worker_id];
  w.worker_id = worker_id;
  w.node_id = node_id;
  w.actor_id = actor_id;
  w.allocation = allocation;
  w.migration_target = migration_target;
  w.executable = executable;
  OutMessage out;
  auto start = out.envelope().getBody().initStartWorker();
  start.setWorkerId(worker_id);
  start.setExecutable(executable);
  auto gpus = start.initGpuIndices(allocation.gpu_indices.size());
  for (unsigned i = 0; i < allocation.gpu_indices.size(); ++i) gpus.set(i, allocation.gpu_indices[i]);
  SendTo(nodes_[node_id].routing_id, out);
  return worker_id;
}

void Controller::StopWorker(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  auto node = nodes_.find(it->second.node_id);
  if (node == nodes_.end() || !node->second.info.alive) return;
  OutMessage out;
  out.envelope().getBody().initStopWorker().setWorkerId(worker_id);
  SendTo(node->second.routing_id, out);
}

void Controller::ReleaseWorker(WorkerRecord& worker) {
  auto node = nodes_.find(worker.node_id);
  if (node != nodes_.end() && !worker.allocation.node_id.empty())
    Release(&node->second.info.available, node->second.info.total, worker.allocation);
  worker.allocation = Allocation{};
}

void Controller::OnRegisterWorker(const InMessage& msg) {
  auto reg = msg.envelope().getBody().getRegisterWorker();
  auto it = workers_.find(reg.getWorkerId());
  if (it == workers_.end()) {
    LOG(WARNING) << "unknown worker " << reg.getWorkerId().cStr() << " registered; stopping it";
    OutMessage out;
    out.envelope().getBody().setShutdown();
    SendTo(msg.routing_id(), out);
    return;
  }
  WorkerRecord& w = it->second;
  w.registered = true;
  w.routing_id = msg.routing_id();
  w.endpoint = reg.getEndpoint();
  w.pid = reg.getPid();
  auto a = actors_.find(w.actor_id);
  if (a == actors_.end() || a->second.info.state == ActorState::kDead) {
    StopWorker(w.worker_id);
    return;
  }
  ActorRecord& actor = a->second;
  const std::string worker_id = w.worker_id;
  if (w.migration_target) {
    auto old = workers_.find(actor.info.worker_id);
    if (old == workers_.end()) {
      FinishMigration(actor.info.actor_id, Unavailable("the actor's old worker is gone"), 0);
      return;
    }
    OutMessage out;
    auto move = out.envelope().getBody().initMoveOut();
    move.setActorId(actor.info.actor_id);
    move.setTargetEndpoint(w.endpoint);
    const std::string actor_id = actor.info.actor_id;
    SendRequest(old->second.routing_id, out, [this, actor_id](const Status& st, const InMessage* m) {
      int64_t us = m ? m->envelope().getBody().getReply().getElapsedUs() : 0;
      FinishMigration(actor_id, st, us);
    });
    return;
  }
  OutMessage out;
  auto host = out.envelope().getBody().initHostActor();
  host.setActorId(actor.info.actor_id);
  host.setClassName(actor.info.class_name);
  host.setName(actor.info.name);
  out.set_payload(actor.constructor_args);
  const std::string actor_id = actor.info.actor_id;
  SendRequest(w.routing_id, out, [this, actor_id, worker_id](const Status& st, const InMessage*) {
    auto a = actors_.find(actor_id);
    auto w = workers_.find(worker_id);
    if (a == actors_.end() || w == workers_.end()) return;
    ActorRecord& actor = a->second;
    if (!st.ok()) {
      actor.kill_requested = true;  // a constructor that fails would fail again
      actor.info.worker_id = worker_id;
      SetState(actor, ActorState::kDead, "constructor failed: " + st.ToString());
      StopWorker(worker_id);
      return;
    }
    actor.info.worker_id = worker_id;
    actor.info.endpoint = w->second.endpoint;
    actor.info.pid = w->second.pid;
    actor.info.node_id = w->second.node_id;
    SetState(actor, ActorState::kAlive,
             "on node " + w->second.node_id + ", worker pid " + std::to_string(w->second.pid));
  });
}

void Controller::OnWorkerExited(const InMessage& msg) {
  auto exited = msg.envelope().getBody().getWorkerExited();
  std::string cause = exited.getSignal() ? "worker process killed by signal " +
                                               std::to_string(exited.getSignal())
                                         : "worker process exited with code " +
                                               std::to_string(exited.getExitCode());
  WorkerGone(exited.getWorkerId(), cause);
}

void Controller::WorkerGone(const std::string& worker_id, const std::string& cause) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  WorkerRecord w = it->second;
  ReleaseWorker(it->second);
  workers_.erase(it);
  auto a = actors_.find(w.actor_id);
  if (a != actors_.end()) {
    ActorRecord& actor = a->second;
    if (w.migration_target) {
      if (actor.migration && actor.migration->target_worker == worker_id)
        FinishMigration(actor.info.actor_id, Unavailable("target worker died: " + cause), 0);
    } else if (actor.info.worker_id == worker_id || actor.info.worker_id.empty()) {
      if (!w.registered && actor.info.state == ActorState::kPendingCreation) {
        SetState(actor, ActorState::kDead,
                 "worker failed to start (" + cause + "); check that " + w.executable +
                     " exists on node " + w.node_id + " and calls tlt::Init()");
      } else if (actor.info.state != ActorState::kDead) {
        ActorFailed(actor, cause);
      }
    }
  }
  RetryPending();
}

void Controller::ActorFailed(ActorRecord& actor, const std::string& cause) {
  actor.info.endpoint.clear();
  actor.info.pid = 0;
  if (actor.migration) {
    auto m = std::move(actor.migration);
    Reply(m->requester, m->request_id, Unavailable("actor failed during migration: " + cause));
    StopWorker(m->target_worker);
  }
  if (!actor.placement.group_id.empty()) {
    auto g = groups_.find(actor.placement.group_id);
    if (g != groups_.end())
      for (auto& user : g->second.bundle_actor)
        if (user == actor.info.actor_id) user.clear();
  }
  if (actor.kill_requested) {
    SetState(actor, ActorState::kDead, "killed by request");
    return;
  }
  if (shutting_down_) {
    SetState(actor, ActorState::kDead, "cluster shut down");
    return;
  }
  const int max = actor.info.max_restarts;
  if (max < 0 || actor.info.restarts < max) {
    actor.info.restarts++;
    SetState(actor, ActorState::kRestarting,
             cause + "; restart " + std::to_string(actor.info.restarts) + " of " +
                 (max < 0 ? std::string("unlimited") : std::to_string(max)));
    actor.info.worker_id.clear();
    Schedule(actor.info.actor_id);
  } else {
    SetState(actor, ActorState::kDead,
             cause + (max > 0 ? " (no restarts left of " + std::to_string(max) + ")" : ""));
  }
}

void Controller::OnKillActor(const InMessage& msg) {
  auto kill = msg.envelope().getBody().getKillActor();
  auto it = actors_.find(kill.getActorId());
  if (it == actors_.end()) {
    Reply(msg.routing_id(), msg.envelope().getRequestId(),
          NotFound("no actor " + std::string(kill.getActorId())));
    return;
  }
  ActorRecord& actor = it->second;
  if (kill.getNoRestart()) actor.kill_requested = true;
  if (!actor.info.worker_id.empty() && workers_.count(actor.info.worker_id)) {
    StopWorker(actor.info.worker_id);
  } else if (actor.info.state != ActorState::kDead) {
    pending_schedule_.erase(
        std::remove(pending_schedule_.begin(), pending_schedule_.end(), actor.info.actor_id),
        pending_schedule_.end());
    for (auto& [wid, w] : workers_)
      if (w.actor_id == actor.info.actor_id) StopWorker(wid);
    SetState(actor, ActorState::kDead, "killed by request before it started");
  }
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK());
}

void Controller::OnMigrateActor(const InMessage& msg) {
  auto req = msg.envelope().getBody().getMigrateActor();
  const uint64_t request_id = msg.envelope().getRequestId();
  auto it = actors_.find(req.getActorId());
  if (it == actors_.end()) {
    Reply(msg.routing_id(), request_id, NotFound("no actor " + std::string(req.getActorId())));
    return;
  }
  ActorRecord& actor = it->second;
  if (actor.info.state != ActorState::kAlive) {
    Reply(msg.routing_id(), request_id,
          Unavailable(std::string("actor is ") + ActorStateName(actor.info.state) +
                      "; only an ALIVE actor can migrate"));
    return;
  }
  if (!actor.info.checkpointable) {
    Reply(msg.routing_id(), request_id,
          InvalidArgument("actor class '" + actor.info.class_name +
                          "' has no .Checkpoint(save, load): it cannot migrate"));
    return;
  }
  PlacementOptions opts;
  std::string target = req.getTargetNodeId();
  if (!target.empty()) {
    opts.strategy = PlacementStrategy::kNodeAffinity;
    opts.node_id = target;
  }
  // Prefer another node; fall back to another worker on the same node.
  Result<Allocation> placed = PlaceActor(NodeViews(target.empty() ? actor.info.node_id : ""),
                                         actor.request, opts);
  if (!placed.ok() && target.empty()) placed = PlaceActor(NodeViews(), actor.request, opts);
  // No free room anywhere: a new worker on the same node takes over the actor's own
  // allocation (its GPUs and CPUs move with it).
  bool same_allocation = false;
  auto current = workers_.find(actor.info.worker_id);
  if (!placed.ok() && (target.empty() || target == actor.info.node_id) && current != workers_.end()) {
    placed = current->second.allocation;
    same_allocation = true;
  }
  if (!placed.ok()) {
    Reply(msg.routing_id(), request_id, placed.status().WithContext("no place to migrate to"));
    return;
  }
  if (!same_allocation) {
    Status st = Reserve(&nodes_[placed->node_id].info.available, *placed);
    if (!st.ok()) {
      Reply(msg.routing_id(), request_id, st);
      return;
    }
  }
  actor.migration = std::make_unique<PendingMigration>();
  actor.migration->same_allocation = same_allocation;
  actor.migration->requester = msg.routing_id();
  actor.migration->request_id = request_id;
  actor.migration->start_ms = clock_->NowMs();
  SetState(actor, ActorState::kMigrating, "to node " + placed->node_id);
  actor.migration->target_worker =
      StartWorker(placed->node_id, actor.info.actor_id, *placed, actor.executable, true);
}

void Controller::FinishMigration(const std::string& actor_id, const Status& status,
                                 int64_t elapsed_us) {
  auto it = actors_.find(actor_id);
  if (it == actors_.end() || !it->second.migration) return;
  ActorRecord& actor = it->second;
  auto m = std::move(actor.migration);
  auto target = workers_.find(m->target_worker);
  const int64_t total_ms = clock_->NowMs() - m->start_ms;
  if (!status.ok() || target == workers_.end()) {
    Status failure = status.ok() ? Unavailable("target worker is gone") : status;
    if (target != workers_.end()) {
      if (m->same_allocation) target->second.allocation = Allocation{};
      ReleaseWorker(target->second);
      StopWorker(m->target_worker);
      target->second.actor_id.clear();
    }
    SetState(actor, ActorState::kAlive, "migration failed, stays put: " + failure.message());
    Reply(m->requester, m->request_id, failure);
    return;
  }
  auto old = workers_.find(actor.info.worker_id);
  if (old != workers_.end()) {
    if (m->same_allocation) old->second.allocation = Allocation{};  // now the new worker's
    ReleaseWorker(old->second);
    old->second.actor_id.clear();
    const std::string old_id = old->first;
    loop_->After(std::chrono::milliseconds(options_.moved_worker_grace_ms),
                 [this, old_id] { StopWorker(old_id); });
  }
  WorkerRecord& w = target->second;
  w.migration_target = false;
  const std::string from = actor.info.node_id;
  actor.info.worker_id = w.worker_id;
  actor.info.endpoint = w.endpoint;
  actor.info.pid = w.pid;
  actor.info.node_id = w.node_id;
  actor.info.gpu_indices = w.allocation.gpu_indices;
  AddEvent(&actor, actor_id, "MIGRATED",
           "from node " + from + " to " + w.node_id + " in " + std::to_string(total_ms) +
               " ms (state transfer " + std::to_string(elapsed_us / 1000) + " ms)");
  SetState(actor, ActorState::kAlive, "after migration to node " + w.node_id);
  Reply(m->requester, m->request_id, Status::OK(), [&](proto::Reply::Builder r) {
    r.setElapsedUs(elapsed_us);
    FillActor(actor, false, r.initActor());
  });
}

void Controller::OnCreateGroup(const InMessage& msg) {
  auto req = msg.envelope().getBody().getCreateGroup();
  GroupRecord group;
  for (auto b : req.getBundles()) group.bundles.push_back(FromProto(b));
  auto placed = PlaceGroup(NodeViews(), group.bundles, static_cast<GroupStrategy>(req.getStrategy()));
  if (!placed.ok()) {
    Reply(msg.routing_id(), msg.envelope().getRequestId(), placed.status());
    return;
  }
  for (const auto& a : *placed) CHECK_OK(Reserve(&nodes_[a.node_id].info.available, a));
  group.allocations = std::move(placed).value();
  group.bundle_actor.assign(group.bundles.size(), "");
  const std::string id = NewId("g");
  std::string where;
  for (const auto& a : group.allocations) where += (where.empty() ? "" : ",") + a.node_id;
  AddEvent(nullptr, "", "GROUP_CREATED", id + " on " + where);
  groups_[id] = std::move(group);
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK(),
        [&](proto::Reply::Builder r) { r.setGroupId(id); });
}

void Controller::OnRemoveGroup(const InMessage& msg) {
  std::string id = msg.envelope().getBody().getRemoveGroup();
  auto it = groups_.find(id);
  if (it == groups_.end()) {
    Reply(msg.routing_id(), msg.envelope().getRequestId(), NotFound("no placement group " + id));
    return;
  }
  for (const auto& a : it->second.allocations) {
    auto node = nodes_.find(a.node_id);
    if (node != nodes_.end()) Release(&node->second.info.available, node->second.info.total, a);
  }
  groups_.erase(it);
  Reply(msg.routing_id(), msg.envelope().getRequestId(), Status::OK());
  RetryPending();
}

}  // namespace tlt
