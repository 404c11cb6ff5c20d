// Placement policy of the controller: which node gets an actor, or a gang of bundles.
//
// Pure, deterministic functions over value types (resources.h): no I/O, no globals, no
// clocks, no randomness. The same inputs always give the same node, so tests can assert
// exact choices. Ties are broken by node_id. The controller owns the node table and the
// accounting; it calls Place*() to choose and Reserve()/Release() to keep `available`
// up to date. Thread-compatible: nothing here holds state.
//
// Errors (ErrorCode, status.h):
//   kInvalidArgument  the request itself is wrong (negative amounts, no bundles).
//   kInfeasible       no ALIVE node could ever fit it, judged by `total`. Do not retry
//                     until the cluster changes; the message says what is missing.
//   kUnavailable      it fits some alive node by total but not now; retry after a release.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/resources.h"
#include "runtime/status.h"

namespace tlt {

// A node as the placement policy sees it.
struct NodeView {
  std::string node_id;
  bool alive = true;        // dead nodes are never chosen and do not count as feasible
  NodeResources total;      // everything the node has
  NodeResources available;  // total minus reservations: cpus and custom amounts left, and
                            // `gpus` is the list of GPUs not granted to anyone
  int num_actors = 0;       // actors placed there (for kSpread)
  std::map<std::string, double> gpu_type_speed;  // relative speed by GPU type (unused here)
};

// What was granted on one node.
struct Allocation {
  std::string node_id;
  double cpus = 0;
  std::vector<int> gpu_indices;  // GpuInfo::index of each granted GPU, ascending
  std::map<std::string, double> custom;
};

// Picks a node for one actor and says what it gets there; does not modify `nodes` (call
// Reserve() on the chosen node's `available` to commit). Strategies:
//   kDefault       least loaded node that fits now (see NodeLoad), tie: node_id.
//   kPack          most loaded node that fits now, tie: node_id.
//   kSpread        node with the fewest num_actors that fits now, tie: node_id.
//   kNodeAffinity  opts.node_id. Unknown or dead node: hard -> Infeasible, soft -> kDefault.
//                  Alive but cannot fit now: soft -> kDefault; hard -> Unavailable, or
//                  Infeasible if that node could never fit it by total.
// opts.group_id / bundle_index are not looked at: to place inside a bundle the caller
// passes a NodeView whose resources are the bundle's reservation.
// GPUs are granted whole, only of req.gpu_type (empty: any type) and with at least
// req.gpu_memory_bytes each, lowest indices first.
Result<Allocation> PlaceActor(const std::vector<NodeView>& nodes, const ResourceRequest& req,
                              const PlacementOptions& opts);

// Reserves every bundle or none; the result has one Allocation per bundle, in bundle order
// (several may name the same node). Does not modify `nodes`. Strategies:
//   kStrictPack    all bundles on one node (least loaded node that fits them all).
//   kStrictSpread  every bundle on a different node (a full matching is searched for, so
//                  a solution is found whenever one exists; least loaded nodes preferred).
//   kPack          greedy fewest nodes: repeatedly take the node that fits the most of the
//                  remaining bundles (tie: most loaded, then node_id).
//   kSpread        round-robin over nodes in least-loaded order; a bundle that does not fit
//                  the next node goes to the one after it that fits.
// Infeasible when the same strategy fails even on an empty cluster (available = total).
Result<std::vector<Allocation>> PlaceGroup(const std::vector<NodeView>& nodes,
                                           const std::vector<ResourceRequest>& bundles,
                                           GroupStrategy strategy);

// Subtracts `a` from `available`. Fails with kUnavailable, leaving `available` untouched,
// if it does not fit (too few cpus or custom, or a GPU index that is not free).
Status Reserve(NodeResources* available, const Allocation& a);

// Gives `a` back to `available`, never beyond `total` (releasing twice is harmless). GPUs
// come back as described in `total`; `available->gpus` stays sorted by index.
void Release(NodeResources* available, const NodeResources& total, const Allocation& a);

// Whether `req` fits in `available` now: cpus, custom amounts and enough GPUs of the
// requested type with enough memory. Pass a node's total to ask "could it ever fit".
bool Fits(const NodeResources& available, const ResourceRequest& req);

// Fraction of a node in use, in [0, 1]: the mean of its used-cpu fraction and used-GPU
// fraction, over the kinds it has (a node with neither is 0).
double NodeLoad(const NodeView& node);

// "cpus=1 gpus=1 gpu_type=H200 gpu_memory=80GiB ssd=1" (fields at their default omitted,
// cpus always shown).
std::string DescribeRequest(const ResourceRequest& req);

}  // namespace tlt
