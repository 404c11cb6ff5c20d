#include "runtime/protocol_convert.h"

namespace tlt {
namespace {

template <typename ListBuilder>
void CustomToProto(const std::map<std::string, double>& custom, ListBuilder list) {
  unsigned i = 0;
  for (const auto& [name, amount] : custom) {
    list[i].setName(name);
    list[i].setAmount(amount);
    ++i;
  }
}

std::map<std::string, double> CustomFromProto(capnp::List<proto::CustomAmount>::Reader list) {
  std::map<std::string, double> custom;
  for (auto c : list) custom[c.getName()] = c.getAmount();
  return custom;
}

}  // namespace

void ToProto(const NodeResources& r, proto::Resources::Builder out) {
  out.setCpus(r.cpus);
  auto gpus = out.initGpus(r.gpus.size());
  for (unsigned i = 0; i < r.gpus.size(); ++i) {
    gpus[i].setIndex(r.gpus[i].index);
    gpus[i].setType(r.gpus[i].type);
    gpus[i].setMemoryBytes(r.gpus[i].memory_bytes);
    gpus[i].setSimulated(r.gpus[i].simulated);
  }
  CustomToProto(r.custom, out.initCustom(r.custom.size()));
}

NodeResources FromProto(proto::Resources::Reader r) {
  NodeResources out;
  out.cpus = r.getCpus();
  for (auto g : r.getGpus()) {
    out.gpus.push_back({g.getIndex(), g.getType(), g.getMemoryBytes(), g.getSimulated()});
  }
  out.custom = CustomFromProto(r.getCustom());
  return out;
}

void ToProto(const ResourceRequest& r, proto::ResourceRequest::Builder out) {
  out.setCpus(r.cpus);
  out.setGpus(r.gpus);
  out.setGpuType(r.gpu_type);
  out.setGpuMemoryBytes(r.gpu_memory_bytes);
  CustomToProto(r.custom, out.initCustom(r.custom.size()));
}

ResourceRequest FromProto(proto::ResourceRequest::Reader r) {
  ResourceRequest out;
  out.cpus = r.getCpus();
  out.gpus = r.getGpus();
  out.gpu_type = r.getGpuType();
  out.gpu_memory_bytes = r.getGpuMemoryBytes();
  out.custom = CustomFromProto(r.getCustom());
  return out;
}

void ToProto(const PlacementOptions& p, proto::PlacementOptions::Builder out) {
  out.setStrategy(static_cast<uint8_t>(p.strategy));
  out.setNodeId(p.node_id);
  out.setSoft(p.soft);
  out.setGroupId(p.group_id);
  out.setBundleIndex(p.bundle_index);
}

PlacementOptions FromProto(proto::PlacementOptions::Reader p) {
  PlacementOptions out;
  out.strategy = static_cast<PlacementStrategy>(p.getStrategy());
  out.node_id = p.getNodeId();
  out.soft = p.getSoft();
  out.group_id = p.getGroupId();
  out.bundle_index = p.getBundleIndex();
  return out;
}

void ToProto(const ActorEvent& e, proto::Event::Builder out) {
  out.setTimeMs(e.time_ms);
  out.setActorId(e.actor_id);
  out.setKind(e.kind);
  out.setDetail(e.detail);
}

ActorEvent FromProto(proto::Event::Reader e) {
  return {e.getTimeMs(), e.getActorId(), e.getKind(), e.getDetail()};
}

void ToProto(const ActorInfo& a, proto::ActorInfo::Builder out) {
  out.setActorId(a.actor_id);
  out.setName(a.name);
  out.setClassName(a.class_name);
  out.setState(static_cast<uint8_t>(a.state));
  out.setNodeId(a.node_id);
  out.setWorkerId(a.worker_id);
  out.setEndpoint(a.endpoint);
  out.setPid(a.pid);
  out.setRestarts(a.restarts);
  out.setMaxRestarts(a.max_restarts);
  out.setMaxTaskRetries(a.max_task_retries);
  out.setDeathCause(a.death_cause);
  auto gpus = out.initGpuIndices(a.gpu_indices.size());
  for (unsigned i = 0; i < a.gpu_indices.size(); ++i) gpus.set(i, a.gpu_indices[i]);
  out.setGpuType(a.gpu_type);
  out.setCreatedMs(a.created_ms);
  out.setCheckpointable(a.checkpointable);
  auto events = out.initEvents(a.events.size());
  for (unsigned i = 0; i < a.events.size(); ++i) ToProto(a.events[i], events[i]);
}

ActorInfo FromProto(proto::ActorInfo::Reader a) {
  ActorInfo out;
  out.actor_id = a.getActorId();
  out.name = a.getName();
  out.class_name = a.getClassName();
  out.state = static_cast<ActorState>(a.getState());
  out.node_id = a.getNodeId();
  out.worker_id = a.getWorkerId();
  out.endpoint = a.getEndpoint();
  out.pid = a.getPid();
  out.restarts = a.getRestarts();
  out.max_restarts = a.getMaxRestarts();
  out.max_task_retries = a.getMaxTaskRetries();
  out.death_cause = a.getDeathCause();
  for (auto g : a.getGpuIndices()) out.gpu_indices.push_back(g);
  out.gpu_type = a.getGpuType();
  out.created_ms = a.getCreatedMs();
  out.checkpointable = a.getCheckpointable();
  for (auto e : a.getEvents()) out.events.push_back(FromProto(e));
  return out;
}

void ToProto(const NodeInfo& n, proto::NodeInfo::Builder out) {
  out.setNodeId(n.node_id);
  out.setAddress(n.address);
  out.setAlive(n.alive);
  ToProto(n.total, out.initTotal());
  ToProto(n.available, out.initAvailable());
  out.setNumActors(n.num_actors);
  out.setLastHeartbeatMs(n.last_heartbeat_ms);
  out.setPid(n.pid);
}

NodeInfo FromProto(proto::NodeInfo::Reader n) {
  NodeInfo out;
  out.node_id = n.getNodeId();
  out.address = n.getAddress();
  out.alive = n.getAlive();
  out.total = FromProto(n.getTotal());
  out.available = FromProto(n.getAvailable());
  out.num_actors = n.getNumActors();
  out.last_heartbeat_ms = n.getLastHeartbeatMs();
  out.pid = n.getPid();
  return out;
}

}  // namespace tlt
