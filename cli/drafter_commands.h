// The drafter commands of `tlt` and the speculative side of `tlt generate` (built with LibTorch).
//
//   tlt drafter init TARGET_DIR --out DIR [--seed N]
//       An untrained drafter for the target (config.json + model.safetensors, trainable weights).
//   tlt drafter record TARGET_DIR --prompts FILE --out FILE [--max-new-tokens N --temperature T
//       --top-k K --top-p P --seed S --samples-per-prompt K --batch-size B] [--device --dtype]
//       Generates responses with the target and writes the drafter's training data.
//   tlt drafter train TARGET_DIR --drafter DIR --data FILE [--steps N --lr X --batch-size N
//       --window N --seed S --log-every N --out DIR] [--device --dtype] [--json]
//       Trains the drafter offline (AdamW, DrafterTrainer); progress via glog; writes the
//       drafter and optimizer.safetensors to --out (default: --drafter, in place) and resumes
//       from an optimizer.safetensors found in --drafter.
//
// File formats (JSON Lines, one object a line):
//   prompts: {"prompt_ids": [1, 2, 3]} or {"prompt": "text"} (needs the target's tokenizer.json).
//   data:    {"tokens": [prompt ids..., response ids...], "prompt_length": N}; the trainer
//            recomputes the target's hidden states from the tokens (once, before training), so
//            the file stays small and does not depend on the dtype; only response positions
//            (index >= prompt_length) count in the loss.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "cli/flags.h"
#include "models/engine.h"
#include "models/transformer.h"
#include "runtime/status.h"
#include "speculative/speculative_engine.h"

namespace tlt::cli {

int DrafterInitCommand(const Flags& flags);
int DrafterRecordCommand(const Flags& flags);
int DrafterTrainCommand(const Flags& flags);

// `tlt generate --drafter DIR [--strategy S | --adaptive [--strategies A,B]] [--sd-threshold N
// --sd-patience N]`: the engine for `target` with `base`'s batch size, lengths, device and dtype.
// Fixed strategy (default 8_4_16): SD always on unless --sd-threshold is given. --adaptive: the
// BEG-MAB bandit over --strategies (default 8_4_48,8_4_32,8_4_16,8_4_8), SD switched with the
// release's threshold 32 and patience 10 unless given. Errors name the bad flag or mismatch.
Result<std::unique_ptr<speculative::SpeculativeEngine>> SpeculativeEngineFromFlags(
    const Flags& flags, models::Transformer target, const models::EngineOptions& base);
// mean_accept_length, accepted_histogram, draft/verify/plain seconds, SD on/off steps, ...
nlohmann::json SpeculativeStatsJson(speculative::SpeculativeEngine& engine);

}  // namespace tlt::cli
