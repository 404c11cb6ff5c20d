// Resources a node offers and an actor asks for, and how an actor is placed.
//
// Plain value types shared by the controller (accounting, placement), the node agent
// (discovery, reporting) and the driver (actor options). No I/O, no locking.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tlt {

// One GPU of a node. `simulated` GPUs exist only in the node agent's bookkeeping; they
// let tests and the cluster simulator exercise placement on machines without GPUs.
struct GpuInfo {
  int index = 0;                 // index on its node (CUDA ordinal for real GPUs)
  std::string type;              // "H200", "A100", "SIM-FAST" ...
  uint64_t memory_bytes = 0;     // total device memory
  bool simulated = false;
};

// Everything a node has, reported by its agent at registration.
struct NodeResources {
  double cpus = 0;
  std::vector<GpuInfo> gpus;
  std::map<std::string, double> custom;  // user-named resources, e.g. {"ssd": 1}
};

// What one actor (or one bundle of a placement group) needs.
struct ResourceRequest {
  double cpus = 1;
  int gpus = 0;                   // whole GPUs
  std::string gpu_type;           // empty: any type
  uint64_t gpu_memory_bytes = 0;  // each granted GPU must have at least this much
  std::map<std::string, double> custom;
};

enum class PlacementStrategy : uint8_t {
  kDefault = 0,       // spread-ish: least loaded feasible node (Ray's DEFAULT)
  kPack = 1,          // fill the most-used feasible node first
  kSpread = 2,        // prefer nodes with the fewest actors of this request
  kNodeAffinity = 3,  // on `node_id`; if `soft`, elsewhere when it cannot fit
};

// Strategy of a placement group (gang of bundles reserved all-or-nothing).
enum class GroupStrategy : uint8_t {
  kPack = 0,          // as few nodes as possible, may split
  kSpread = 1,        // as many nodes as possible, may share
  kStrictPack = 2,    // all bundles on one node
  kStrictSpread = 3,  // every bundle on a different node
};

struct PlacementOptions {
  PlacementStrategy strategy = PlacementStrategy::kDefault;
  std::string node_id;    // for kNodeAffinity
  bool soft = false;      // for kNodeAffinity
  std::string group_id;   // place inside this placement group's bundle ...
  int bundle_index = -1;  // ... at this index (-1: any bundle of the group)
};

}  // namespace tlt
