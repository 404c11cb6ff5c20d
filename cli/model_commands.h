// The model commands of `tlt` (built when LibTorch is found).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "cli/flags.h"
#include "runtime/status.h"

namespace tlt::cli {

int ModelInfoCommand(const Flags& flags);    // tlt model info DIR [--json]
int ModelLogitsCommand(const Flags& flags);  // tlt model logits DIR --ids 1,2,3 [--json]
// tlt generate DIR (--prompt T | --prompt-ids ..) [--drafter DIR [--strategy S | --adaptive]]
int GenerateCommand(const Flags& flags);

// Shared by the model and drafter commands.
int Fail(const Status& st);  // prints "tlt: <status>" to stderr, returns 1
// "1,2,3" -> ids; errors name `flag`.
Result<std::vector<int64_t>> ParseIds(const std::string& text, const std::string& flag);
// --device (default: cuda when available, else cpu).
Result<torch::Device> DeviceFrom(const Flags& flags);

}  // namespace tlt::cli
