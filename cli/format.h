// Output of the `tlt` command: JSON for scripts, aligned tables for people.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/actor_info.h"

namespace tlt::cli {

nlohmann::json ToJson(const ActorInfo& actor);
nlohmann::json ToJson(const NodeInfo& node);
nlohmann::json ToJson(const ActorEvent& event);

// Prints rows under a header, each column as wide as its widest cell.
std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows);
std::string FormatBytes(uint64_t bytes);     // "80 GiB"
std::string FormatTimeMs(int64_t epoch_ms);  // "2026-11-28 13:45:01.123"

}  // namespace tlt::cli
