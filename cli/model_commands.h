// The model commands of `tlt` (built when LibTorch is found).
#pragma once

#include "cli/flags.h"

namespace tlt::cli {

int ModelInfoCommand(const Flags& flags);    // tlt model info DIR [--json]
int ModelLogitsCommand(const Flags& flags);  // tlt model logits DIR --ids 1,2,3 [--json]
int GenerateCommand(const Flags& flags);     // tlt generate DIR (--prompt T | --prompt-ids ..)

}  // namespace tlt::cli
