// Checkpoint directories on disk, without LibTorch: the manifest that makes a directory a valid
// checkpoint, the checkpoints of a run, and retention (keep the last K).
//
// A run keeps its checkpoints in one root directory, one `step-<N>` directory per checkpoint
// (N = completed training steps, CheckpointName). SaveCheckpoint (rl/checkpoint.h) writes into
// `<dir>.tmp-<pid>` and renames the directory only once it is complete, so a name with any suffix
// is a checkpoint being written (or one a crash left behind): listing and pruning never touch it.
//
// A checkpoint is valid when its MANIFEST.json is a tlt-rl manifest that lists every file of
// CheckpointFiles() and each file's size and CRC-32 match it (VerifyCheckpoint).
//
// PruneCheckpoints(root, keep_last, protect) deletes every `step-<N>` directory except
//   - the keep_last with the highest N,
//   - the valid one with the highest N (also when it is older than those: corrupted newer ones
//     must not leave a run with nothing to resume from),
//   - `protect` (the checkpoint the caller has just written), and
//   - any directory whose name is not exactly `step-<digits>` (temporary ones included).
// keep_last <= 0 keeps everything. Deletion goes through tlt::RemoveTree.
//
// Free functions, no state; not safe against two processes pruning the same root at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::rl {

// The files of a checkpoint, relative to its directory (MANIFEST.json aside).
const std::vector<std::string>& CheckpointFiles();

// Writes `data` to `path` (created or truncated) and fsyncs it.
Status WriteFileSynced(const std::string& path, const std::string& data);
// Reads the files of CheckpointFiles() under `dir`, fsyncs them and writes MANIFEST.json last.
Status WriteCheckpointManifest(const std::string& dir);
// OK when `dir` is a valid checkpoint; otherwise the error names the directory and the file:
// kNotFound "... has no MANIFEST.json: incomplete or not a checkpoint", kInvalidArgument
// "... does not match its checksum in MANIFEST.json (corrupted)", ...
Status VerifyCheckpoint(const std::string& dir);

// "step-00000012" for step 12 (zero-padded so that names sort by step; any digits parse).
std::string CheckpointName(int64_t step);

struct CheckpointEntry {
  int64_t step = 0;
  std::string path;  // root/step-<N>
};
// The `step-<N>` directories under root, by increasing N (valid or not). A missing root: none.
Result<std::vector<CheckpointEntry>> ListCheckpoints(const std::string& root);
// The path of the valid checkpoint with the highest step; kNotFound when there is none.
Result<std::string> LatestValidCheckpoint(const std::string& root);
// See the header comment. `removed` (optional) receives the deleted paths.
Status PruneCheckpoints(const std::string& root, int64_t keep_last, const std::string& protect = "",
                        std::vector<std::string>* removed = nullptr);

}  // namespace tlt::rl
