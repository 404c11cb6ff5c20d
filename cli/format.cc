#include "cli/format.h"

#include <algorithm>
#include <ctime>
#include <sstream>

namespace tlt::cli {

nlohmann::json ToJson(const ActorEvent& e) {
  return {{"time_ms", e.time_ms}, {"actor_id", e.actor_id}, {"kind", e.kind}, {"detail", e.detail}};
}

nlohmann::json ToJson(const ActorInfo& a) {
  nlohmann::json j = {{"actor_id", a.actor_id},
                      {"name", a.name},
                      {"class", a.class_name},
                      {"state", ActorStateName(a.state)},
                      {"node_id", a.node_id},
                      {"worker_id", a.worker_id},
                      {"endpoint", a.endpoint},
                      {"pid", a.pid},
                      {"restarts", a.restarts},
                      {"max_restarts", a.max_restarts},
                      {"max_task_retries", a.max_task_retries},
                      {"death_cause", a.death_cause},
                      {"gpu_indices", a.gpu_indices},
                      {"gpu_type", a.gpu_type},
                      {"created_ms", a.created_ms},
                      {"checkpointable", a.checkpointable}};
  if (!a.events.empty()) {
    j["events"] = nlohmann::json::array();
    for (const auto& e : a.events) j["events"].push_back(ToJson(e));
  }
  return j;
}

namespace {
nlohmann::json ResourcesJson(const NodeResources& r) {
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& g : r.gpus)
    gpus.push_back({{"index", g.index}, {"type", g.type}, {"memory_bytes", g.memory_bytes},
                    {"simulated", g.simulated}});
  return {{"cpus", r.cpus}, {"gpus", gpus}, {"custom", r.custom}};
}
}  // namespace

nlohmann::json ToJson(const NodeInfo& n) {
  return {{"node_id", n.node_id},     {"address", n.address},
          {"alive", n.alive},         {"total", ResourcesJson(n.total)},
          {"available", ResourcesJson(n.available)}, {"num_actors", n.num_actors},
          {"pid", n.pid}};
}

std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < header.size(); ++c) {
      std::string cell = c < cells.size() ? cells[c] : "";
      out << cell;
      if (c + 1 < header.size()) out << std::string(width[c] - cell.size() + 2, ' ');
    }
    out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
  return out.str();
}

std::string FormatBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; ++u; }
  std::ostringstream out;
  out.precision(v < 10 && u > 0 ? 2 : 0);
  out << std::fixed << v << " " << units[u];
  return out.str();
}

std::string FormatTimeMs(int64_t epoch_ms) {
  time_t secs = epoch_ms / 1000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  char out[80];
  snprintf(out, sizeof out, "%s.%03d", buf, int(epoch_ms % 1000));
  return out;
}

}  // namespace tlt::cli
