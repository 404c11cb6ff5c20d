// Training checkpoints: written atomically, verified on load, resumed exactly.
//
// Layout of a checkpoint directory:
// - policy/config.json, policy/model.safetensors: the policy in HF layout
//   (models::SaveTransformer)
// - optimizer.pt: AdamW state (torch serialize archive)
// - rng.pt: LibTorch's default CPU generator state
// - state.json: step, optimizer steps, data cursor, seed
// - MANIFEST.json: size and CRC-32 of every file above (rl/checkpoint_store.h)
// SaveCheckpoint() writes everything into `<dir>.tmp-<pid>`, fsyncs the files, writes the
// manifest last, then renames the temporary directory to `dir`. A crash at any point leaves
// either no `dir` or a complete one; a directory without a manifest (or whose files do not match
// it) is refused by LoadCheckpoint with a message naming the file. An existing `dir` is never
// overwritten (kInvalidArgument). A checkpoint whose tensors do not match the learner's model
// (names or shapes) is refused naming the tensor.
//
// Functions are not thread-safe with respect to the learner they save or load.
#pragma once

#include <cstdint>
#include <string>

#include "rl/dataset.h"
#include "rl/learner.h"
#include "runtime/status.h"

namespace tlt::rl {

struct TrainingState {
  int64_t step = 0;  // completed training steps
  DataCursor::State cursor;
};

Status SaveCheckpoint(const std::string& dir, Learner& learner, const TrainingState& state);
// Loads into an existing learner (same model shapes) and fills `state`.
Status LoadCheckpoint(const std::string& dir, Learner* learner, TrainingState* state);

}  // namespace tlt::rl
