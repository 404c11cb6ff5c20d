#include "runtime/placement.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>

namespace tlt {
namespace {

constexpr double kEpsilon = 1e-9;  // slack for fractional cpus added and subtracted repeatedly

Status Infeasible(std::string message) { return {ErrorCode::kInfeasible, std::move(message)}; }

std::string FormatNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", value);
  return buffer;
}

std::string FormatBytes(uint64_t bytes) {
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  return bytes >= kGiB ? FormatNumber(bytes / kGiB) + "GiB" : std::to_string(bytes) + "B";
}

std::string Join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string joined;
  for (const std::string& part : parts) joined += (joined.empty() ? "" : separator) + part;
  return joined;
}

bool GpuMatches(const GpuInfo& gpu, const ResourceRequest& req) {
  return (req.gpu_type.empty() || gpu.type == req.gpu_type) &&
         gpu.memory_bytes >= req.gpu_memory_bytes;
}

double Amount(const std::map<std::string, double>& resources, const std::string& name) {
  auto it = resources.find(name);
  return it == resources.end() ? 0 : it->second;
}

Status Validate(const ResourceRequest& req) {
  bool negative = req.cpus < 0 || req.gpus < 0;
  for (const auto& [name, amount] : req.custom) negative = negative || amount < 0;
  if (negative) return InvalidArgument("negative amount in request " + DescribeRequest(req));
  return Status::OK();
}

// If `req` fits `available`, builds its allocation (lowest matching GPU indices), reserves
// it and returns true; otherwise leaves `available` alone and returns false.
bool TryPlace(const std::string& node_id, NodeResources* available, const ResourceRequest& req,
              Allocation* out) {
  if (!Fits(*available, req)) return false;
  Allocation a{node_id, req.cpus, {}, req.custom};
  for (const GpuInfo& gpu : available->gpus) {
    if (GpuMatches(gpu, req)) a.gpu_indices.push_back(gpu.index);
  }
  std::sort(a.gpu_indices.begin(), a.gpu_indices.end());
  a.gpu_indices.resize(req.gpus);
  if (!Reserve(available, a).ok()) return false;  // cannot happen after Fits()
  *out = std::move(a);
  return true;
}

// Why no alive node in `nodes` could ever fit `req` (judged by total), for error messages.
std::string WhyInfeasible(const std::vector<NodeView>& nodes, const ResourceRequest& req) {
  std::vector<const NodeView*> alive;
  for (const NodeView& node : nodes) {
    if (node.alive) alive.push_back(&node);
  }
  if (alive.empty()) {
    return nodes.empty() ? "the cluster has no nodes"
                         : "no alive node (" + std::to_string(nodes.size()) + " known, all dead)";
  }
  std::vector<std::string> why;
  if (req.gpus > 0) {
    std::map<std::string, int> count_by_type;
    int most_matching = 0;
    for (const NodeView* node : alive) {
      int matching = 0;
      for (const GpuInfo& gpu : node->total.gpus) {
        ++count_by_type[gpu.type];
        matching += GpuMatches(gpu, req) ? 1 : 0;
      }
      most_matching = std::max(most_matching, matching);
    }
    std::vector<std::string> have;
    for (const auto& [type, count] : count_by_type) {
      have.push_back(type + " x" + std::to_string(count));
    }
    std::string cluster = have.empty() ? "cluster has no GPUs" : "cluster has: " + Join(have, ", ");
    if (!req.gpu_type.empty() && count_by_type.count(req.gpu_type) == 0) {
      why.push_back("no alive node has a GPU of type '" + req.gpu_type + "' (" + cluster + ")");
    } else if (most_matching < req.gpus) {
      std::string wanted = std::to_string(req.gpus) + " GPU(s)";
      if (!req.gpu_type.empty()) wanted += " of type '" + req.gpu_type + "'";
      if (req.gpu_memory_bytes > 0) wanted += " with >= " + FormatBytes(req.gpu_memory_bytes);
      why.push_back("no alive node has " + wanted +
                    " (most on one node: " + std::to_string(most_matching) + "; " + cluster + ")");
    }
  }
  auto check = [&](const std::string& label, double amount, auto amount_on) {
    double most = 0;
    for (const NodeView* node : alive) most = std::max(most, amount_on(node->total));
    if (amount > most + kEpsilon) {
      why.push_back("no alive node has " + label + "=" + FormatNumber(amount) + " (largest has " +
                    FormatNumber(most) + ")");
    }
  };
  check("cpus", req.cpus, [](const NodeResources& r) { return r.cpus; });
  for (const auto& [name, amount] : req.custom) {
    check("custom resource '" + name + "'", amount,
          [&](const NodeResources& r) { return Amount(r.custom, name); });
  }
  if (why.empty()) why.push_back("no single alive node has all of it at once");
  return Join(why, "; ");
}

enum class Order { kLeastLoaded, kMostLoaded, kFewestActors };

// Indices of the alive nodes in order of preference (ties: node_id).
std::vector<size_t> AliveNodes(const std::vector<NodeView>& nodes, Order order) {
  std::vector<size_t> alive;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].alive) alive.push_back(i);
  }
  auto key = [&](size_t i) {
    if (order == Order::kFewestActors) return static_cast<double>(nodes[i].num_actors);
    return order == Order::kMostLoaded ? -NodeLoad(nodes[i]) : NodeLoad(nodes[i]);
  };
  std::sort(alive.begin(), alive.end(), [&](size_t a, size_t b) {
    return key(a) != key(b) ? key(a) < key(b) : nodes[a].node_id < nodes[b].node_id;
  });
  return alive;
}

// Kuhn's augmenting path: gives bundle `b` a node slot, moving earlier bundles if needed.
bool Augment(size_t b, const std::vector<std::vector<bool>>& fits, std::vector<int>* owner,
             std::vector<bool>* seen) {
  for (size_t slot = 0; slot < owner->size(); ++slot) {
    if (!fits[b][slot] || (*seen)[slot]) continue;
    (*seen)[slot] = true;
    if ((*owner)[slot] < 0 || Augment((*owner)[slot], fits, owner, seen)) {
      (*owner)[slot] = static_cast<int>(b);
      return true;
    }
  }
  return false;
}

// Runs `strategy` against `available` (parallel to `nodes`); fills `out` (one allocation per
// bundle) and returns true only if every bundle was placed.
bool RunGroup(const std::vector<NodeView>& nodes, std::vector<NodeResources> available,
              const std::vector<ResourceRequest>& bundles, GroupStrategy strategy,
              std::vector<Allocation>* out) {
  const std::vector<size_t> order = AliveNodes(nodes, Order::kLeastLoaded);
  out->assign(bundles.size(), Allocation{});
  auto place = [&](size_t node, NodeResources* avail, size_t b) {
    return TryPlace(nodes[node].node_id, avail, bundles[b], &(*out)[b]);
  };
  switch (strategy) {
    case GroupStrategy::kStrictPack:
      for (size_t node : order) {
        NodeResources scratch = available[node];
        bool all = true;
        for (size_t b = 0; b < bundles.size() && all; ++b) all = place(node, &scratch, b);
        if (all) return true;
      }
      return false;
    case GroupStrategy::kStrictSpread: {
      std::vector<std::vector<bool>> fits(bundles.size(), std::vector<bool>(order.size()));
      for (size_t b = 0; b < bundles.size(); ++b) {
        for (size_t s = 0; s < order.size(); ++s)
          fits[b][s] = Fits(available[order[s]], bundles[b]);
      }
      std::vector<int> owner(order.size(), -1);
      for (size_t b = 0; b < bundles.size(); ++b) {
        std::vector<bool> seen(order.size(), false);
        if (!Augment(b, fits, &owner, &seen)) return false;
      }
      for (size_t s = 0; s < order.size(); ++s) {
        if (owner[s] >= 0 && !place(order[s], &available[order[s]], owner[s])) return false;
      }
      return true;
    }
    case GroupStrategy::kPack: {
      std::vector<bool> done(bundles.size(), false);
      for (size_t placed = 0; placed < bundles.size();) {
        size_t best_node = 0, best_count = 0;
        for (size_t node : AliveNodes(nodes, Order::kMostLoaded)) {
          NodeResources scratch = available[node];
          size_t count = 0;
          for (size_t b = 0; b < bundles.size(); ++b) count += !done[b] && place(node, &scratch, b);
          if (count > best_count) {
            best_node = node;
            best_count = count;
          }
        }
        if (best_count == 0) return false;
        for (size_t b = 0; b < bundles.size(); ++b) {  // commit the best node's share
          if (!done[b] && place(best_node, &available[best_node], b)) {
            done[b] = true;
            ++placed;
          }
        }
      }
      return true;
    }
    case GroupStrategy::kSpread: {
      size_t cursor = 0;
      for (size_t b = 0; b < bundles.size(); ++b) {
        bool placed = false;
        for (size_t step = 0; step < order.size() && !placed; ++step) {
          size_t slot = (cursor + step) % order.size();
          placed = place(order[slot], &available[order[slot]], b);
          if (placed) cursor = slot + 1;
        }
        if (!placed) return false;
      }
      return true;
    }
  }
  return false;
}

const char* GroupStrategyName(GroupStrategy strategy) {
  static const char* const kNames[] = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"};
  return kNames[static_cast<int>(strategy) & 3];
}

}  // namespace

bool Fits(const NodeResources& available, const ResourceRequest& req) {
  if (req.cpus > available.cpus + kEpsilon) return false;
  for (const auto& [name, amount] : req.custom) {
    if (amount > Amount(available.custom, name) + kEpsilon) return false;
  }
  int matching = 0;
  for (const GpuInfo& gpu : available.gpus) matching += GpuMatches(gpu, req) ? 1 : 0;
  return matching >= req.gpus;
}

double NodeLoad(const NodeView& node) {
  double sum = 0;
  int kinds = 0;
  if (node.total.cpus > 0) {
    sum += (node.total.cpus - node.available.cpus) / node.total.cpus;
    ++kinds;
  }
  if (!node.total.gpus.empty()) {
    double total_gpus = static_cast<double>(node.total.gpus.size());
    sum += (total_gpus - static_cast<double>(node.available.gpus.size())) / total_gpus;
    ++kinds;
  }
  return kinds == 0 ? 0 : std::clamp(sum / kinds, 0.0, 1.0);
}

std::string DescribeRequest(const ResourceRequest& req) {
  std::string text = "cpus=" + FormatNumber(req.cpus);
  if (req.gpus != 0) text += " gpus=" + std::to_string(req.gpus);
  if (!req.gpu_type.empty()) text += " gpu_type=" + req.gpu_type;
  if (req.gpu_memory_bytes > 0) text += " gpu_memory=" + FormatBytes(req.gpu_memory_bytes);
  for (const auto& [name, amount] : req.custom) text += " " + name + "=" + FormatNumber(amount);
  return text;
}

Status Reserve(NodeResources* available, const Allocation& a) {
  const std::string where = "cannot reserve on node '" + a.node_id + "': ";
  if (a.cpus > available->cpus + kEpsilon) {
    return Unavailable(where + "needs cpus=" + FormatNumber(a.cpus) + ", " +
                       FormatNumber(available->cpus) + " free");
  }
  for (const auto& [name, amount] : a.custom) {
    if (amount > Amount(available->custom, name) + kEpsilon) {
      return Unavailable(where + "needs '" + name + "'=" + FormatNumber(amount) + ", " +
                         FormatNumber(Amount(available->custom, name)) + " free");
    }
  }
  std::set<int> wanted(a.gpu_indices.begin(), a.gpu_indices.end());
  if (wanted.size() != a.gpu_indices.size()) return InvalidArgument(where + "GPU index repeated");
  for (int index : wanted) {
    bool free = std::any_of(available->gpus.begin(), available->gpus.end(),
                            [&](const GpuInfo& gpu) { return gpu.index == index; });
    if (!free) return Unavailable(where + "GPU " + std::to_string(index) + " is not free");
  }
  available->cpus = std::max(0.0, available->cpus - a.cpus);
  for (const auto& [name, amount] : a.custom) {
    auto it = available->custom.find(name);
    if (it != available->custom.end()) it->second = std::max(0.0, it->second - amount);
  }
  auto& gpus = available->gpus;
  gpus.erase(std::remove_if(gpus.begin(), gpus.end(),
                            [&](const GpuInfo& gpu) { return wanted.count(gpu.index) > 0; }),
             gpus.end());
  return Status::OK();
}

void Release(NodeResources* available, const NodeResources& total, const Allocation& a) {
  available->cpus = std::min(total.cpus, available->cpus + a.cpus);
  for (const auto& [name, amount] : a.custom) {
    auto limit = total.custom.find(name);
    if (limit == total.custom.end()) continue;
    double& free = available->custom[name];
    free = std::min(limit->second, free + amount);
  }
  auto& gpus = available->gpus;
  for (int index : a.gpu_indices) {
    auto same = [&](const GpuInfo& gpu) { return gpu.index == index; };
    if (std::any_of(gpus.begin(), gpus.end(), same)) continue;  // already free
    auto it = std::find_if(total.gpus.begin(), total.gpus.end(), same);
    if (it != total.gpus.end()) gpus.push_back(*it);
  }
  std::sort(gpus.begin(), gpus.end(),
            [](const GpuInfo& x, const GpuInfo& y) { return x.index < y.index; });
}

Result<Allocation> PlaceActor(const std::vector<NodeView>& nodes, const ResourceRequest& req,
                              const PlacementOptions& opts) {
  RETURN_NOT_OK(Validate(req));
  const std::string what = "cannot place actor needing " + DescribeRequest(req);
  if (opts.strategy == PlacementStrategy::kNodeAffinity) {
    auto it = std::find_if(nodes.begin(), nodes.end(),
                           [&](const NodeView& node) { return node.node_id == opts.node_id; });
    if (it != nodes.end() && it->alive) {
      NodeResources scratch = it->available;
      Allocation a;
      if (TryPlace(it->node_id, &scratch, req, &a)) return a;
      if (!opts.soft && !Fits(it->total, req)) {
        return Infeasible(what + " on node '" + opts.node_id +
                          "': it can never fit there: " + WhyInfeasible({*it}, req));
      }
      if (!opts.soft) {
        return Unavailable(what + " on node '" + opts.node_id +
                           "': not enough free there now; retry after resources are released");
      }
    } else if (!opts.soft) {
      return Infeasible(what + ": node affinity to " + (it == nodes.end() ? "unknown" : "dead") +
                        " node '" + opts.node_id + "'");
    }
  }
  Order order = opts.strategy == PlacementStrategy::kPack     ? Order::kMostLoaded
                : opts.strategy == PlacementStrategy::kSpread ? Order::kFewestActors
                                                              : Order::kLeastLoaded;
  const std::vector<size_t> alive = AliveNodes(nodes, order);
  int feasible = 0;
  for (size_t i : alive) feasible += Fits(nodes[i].total, req) ? 1 : 0;
  if (feasible == 0) return Infeasible(what + ": " + WhyInfeasible(nodes, req));
  for (size_t i : alive) {  // the first node in order of preference that fits now
    NodeResources scratch = nodes[i].available;
    Allocation a;
    if (TryPlace(nodes[i].node_id, &scratch, req, &a)) return a;
  }
  return Unavailable(what + ": no alive node has it free now (" + std::to_string(feasible) +
                     " of " + std::to_string(alive.size()) +
                     " alive nodes could fit it by total); retry after resources are released");
}

Result<std::vector<Allocation>> PlaceGroup(const std::vector<NodeView>& nodes,
                                           const std::vector<ResourceRequest>& bundles,
                                           GroupStrategy strategy) {
  if (bundles.empty()) return InvalidArgument("placement group has no bundles");
  std::vector<std::string> described;
  for (const ResourceRequest& bundle : bundles) {
    RETURN_NOT_OK(Validate(bundle));
    described.push_back("{" + DescribeRequest(bundle) + "}");
  }
  const std::string what = std::string("cannot place group (") + GroupStrategyName(strategy) +
                           ") of bundles " + Join(described, ", ");
  std::vector<NodeResources> available, total;
  for (const NodeView& node : nodes) {
    available.push_back(node.available);
    total.push_back(node.total);
  }
  std::vector<Allocation> out;
  if (RunGroup(nodes, available, bundles, strategy, &out)) return out;
  if (RunGroup(nodes, total, bundles, strategy, &out)) {
    return Unavailable(what +
                       ": it fits the cluster's total resources but not what is free "
                       "now; retry after resources are released");
  }
  size_t alive = AliveNodes(nodes, Order::kLeastLoaded).size();
  if (strategy == GroupStrategy::kStrictSpread && alive < bundles.size()) {
    return Infeasible(what + ": needs " + std::to_string(bundles.size()) +
                      " distinct alive nodes, cluster has " + std::to_string(alive));
  }
  for (size_t b = 0; b < bundles.size(); ++b) {
    bool fits_somewhere = std::any_of(nodes.begin(), nodes.end(), [&](const NodeView& node) {
      return node.alive && Fits(node.total, bundles[b]);
    });
    if (!fits_somewhere) {
      return Infeasible(what + ": bundle " + std::to_string(b) +
                        " fits no node: " + WhyInfeasible(nodes, bundles[b]));
    }
  }
  return Infeasible(what + ": the bundles never fit together on the alive nodes' totals");
}

}  // namespace tlt
