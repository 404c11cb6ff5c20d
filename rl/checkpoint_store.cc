#include "rl/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/file_util.h"

namespace tlt::rl {
namespace fs = std::filesystem;
namespace {

constexpr const char* kManifestFormat = "tlt-rl-checkpoint-1";

uint32_t Crc(const std::string& data) {
  return static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

// "step-<digits>" -> the number; -1 for any other name.
int64_t StepOfName(const std::string& name) {
  const std::string prefix = "step-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  if (name.size() - prefix.size() > 18) return -1;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

}  // namespace

const std::vector<std::string>& CheckpointFiles() {
  static const std::vector<std::string> files = {"policy/config.json", "policy/model.safetensors",
                                                 "optimizer.pt", "rng.pt", "state.json"};
  return files;
}

Status WriteFileSynced(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return IoError("cannot create " + path);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      ::close(fd);
      return IoError("writing " + path);
    }
    done += static_cast<size_t>(n);
  }
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok ? Status::OK() : IoError("fsync " + path);
}

Status WriteCheckpointManifest(const std::string& dir) {
  const fs::path root(dir);
  nlohmann::json manifest;
  manifest["format"] = kManifestFormat;
  for (const std::string& name : CheckpointFiles()) {
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(root / name));
    int fd = ::open((root / name).c_str(), O_RDONLY);  // files written by LibTorch: sync them
    if (fd < 0 || ::fsync(fd) != 0) {
      if (fd >= 0) ::close(fd);
      return IoError("fsync " + (root / name).string());
    }
    ::close(fd);
    manifest["files"][name] = {{"size", bytes.size()}, {"crc32", Crc(bytes)}};
  }
  return WriteFileSynced((root / "MANIFEST.json").string(), manifest.dump(2));
}

Status VerifyCheckpoint(const std::string& dir) {
  const fs::path root(dir);
  auto manifest_text = ReadFile(root / "MANIFEST.json");
  if (!manifest_text.ok()) {
    return NotFound("checkpoint " + dir + " has no MANIFEST.json: incomplete or not a checkpoint");
  }
  nlohmann::json manifest = nlohmann::json::parse(*manifest_text, nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object() ||
      manifest.value("format", "") != kManifestFormat || !manifest.contains("files")) {
    return InvalidArgument("checkpoint " + dir +
                           ": MANIFEST.json is not a tlt-rl checkpoint manifest");
  }
  for (const std::string& name : CheckpointFiles()) {
    if (!manifest["files"].contains(name)) {
      return InvalidArgument("checkpoint " + dir + ": manifest does not list " + name);
    }
    auto bytes = ReadFile(root / name);
    if (!bytes.ok()) return NotFound("checkpoint " + dir + ": missing " + name);
    const auto& entry = manifest["files"][name];
    if (!entry.is_object() || entry.value("size", uint64_t(0)) != bytes->size() ||
        entry.value("crc32", uint32_t(0)) != Crc(*bytes)) {
      return InvalidArgument("checkpoint " + dir + ": " + name +
                             " does not match its checksum in MANIFEST.json (corrupted)");
    }
  }
  return Status::OK();
}

std::string CheckpointName(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  return name;
}

Result<std::vector<CheckpointEntry>> ListCheckpoints(const std::string& root) {
  std::vector<CheckpointEntry> out;
  std::error_code ec;
  if (!fs::exists(root, ec)) return out;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const int64_t step = StepOfName(it->path().filename().string());
    if (step >= 0 && it->is_directory(ec)) out.push_back({step, it->path().string()});
  }
  if (ec) return IoError("listing " + root + ": " + ec.message());
  std::sort(out.begin(), out.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step < b.step; });
  return out;
}

Result<std::string> LatestValidCheckpoint(const std::string& root) {
  ASSIGN_OR_RETURN(std::vector<CheckpointEntry> all, ListCheckpoints(root));
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (VerifyCheckpoint(it->path).ok()) return it->path;
  }
  return NotFound("no valid checkpoint under " + root);
}

Status PruneCheckpoints(const std::string& root, int64_t keep_last, const std::string& protect,
                        std::vector<std::string>* removed) {
  if (keep_last <= 0) return Status::OK();
  ASSIGN_OR_RETURN(std::vector<CheckpointEntry> all, ListCheckpoints(root));
  std::set<std::string> keep;
  for (size_t i = all.size() - std::min<size_t>(all.size(), keep_last); i < all.size(); ++i) {
    keep.insert(all[i].path);
  }
  auto latest_valid = LatestValidCheckpoint(root);
  if (latest_valid.ok()) keep.insert(*latest_valid);
  std::error_code ec;
  for (const CheckpointEntry& e : all) {
    if (keep.count(e.path)) continue;
    if (!protect.empty() && fs::equivalent(e.path, protect, ec)) continue;
    RETURN_NOT_OK(::tlt::RemoveTree(e.path));
    if (removed) removed->push_back(e.path);
  }
  return Status::OK();
}

}  // namespace tlt::rl
