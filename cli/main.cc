// The `tlt` command.
#include <iostream>
#include <string>

#include "cli/cluster_commands.h"
#include "cli/flags.h"
#ifdef TLT_WITH_MODELS
#include "cli/drafter_commands.h"
#include "cli/model_commands.h"
#endif
#include "runtime/cluster.h"

namespace {

const char* kUsage = R"(usage: tlt COMMAND [flags]

cluster:
  tlt start --head [--port P] [--bind HOST] [--simulated-gpus TYPE:N[,TYPE:N]] [--token T]
  tlt start --address HOST:PORT [--simulated-gpus ...] [--token T]
  tlt stop [--address HOST:PORT] [--token T]
  tlt status [--address HOST:PORT] [--json]
  tlt list actors [--state STATE] [--json]
  tlt get actor ID|NAME [--json]
  tlt list events [--json]            state changes, node joins and deaths, with timestamps

models (Hugging Face checkpoint directories: config.json + safetensors):
  tlt model info DIR [--json]
  tlt model logits DIR --ids 1,2,3 [--json] [--device cpu|cuda]
  tlt generate DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-new-tokens N
               [--temperature T --top-k K --top-p P --seed S --num-samples K] [--json]
               [--drafter DIR [--strategy 8_4_16 | --adaptive [--strategies A,B,..]]
                [--sd-threshold N --sd-patience N]]     speculative decoding (lossless)

drafters (speculative decoding; see docs/speculative.md):
  tlt drafter init TARGET_DIR --out DIR [--seed N]
  tlt drafter record TARGET_DIR --prompts FILE.jsonl --out DATA.jsonl [--max-new-tokens N
               --temperature T --samples-per-prompt K --batch-size B]
  tlt drafter train TARGET_DIR --drafter DIR --data DATA.jsonl [--steps N --lr X
               --batch-size N --out DIR] [--json]
)";

}  // namespace

int main(int argc, char** argv) {
  tlt::Init(argc, argv);
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  auto flags = tlt::cli::Flags::Parse(argc, argv, 1);
  if (!flags.ok()) {
    std::cerr << "tlt: " << flags.status().message() << "\n" << kUsage;
    return 2;
  }
  const auto& w = flags->words();
  const std::string cmd = w.empty() ? "" : w[0];
  const std::string sub = w.size() > 1 ? w[1] : "";
  if (cmd == "start") return tlt::cli::StartCommand(*flags);
  if (cmd == "stop") return tlt::cli::StopCommand(*flags);
  if (cmd == "status") return tlt::cli::StatusCommand(*flags);
  if (cmd == "list" && sub == "actors") return tlt::cli::ListActorsCommand(*flags);
  if (cmd == "list" && sub == "events") return tlt::cli::ListEventsCommand(*flags);
  if (cmd == "get" && sub == "actor") return tlt::cli::GetActorCommand(*flags);
#ifdef TLT_WITH_MODELS
  if (cmd == "model" && sub == "info") return tlt::cli::ModelInfoCommand(*flags);
  if (cmd == "model" && sub == "logits") return tlt::cli::ModelLogitsCommand(*flags);
  if (cmd == "generate") return tlt::cli::GenerateCommand(*flags);
  if (cmd == "drafter" && sub == "init") return tlt::cli::DrafterInitCommand(*flags);
  if (cmd == "drafter" && sub == "record") return tlt::cli::DrafterRecordCommand(*flags);
  if (cmd == "drafter" && sub == "train") return tlt::cli::DrafterTrainCommand(*flags);
#else
  if (cmd == "model" || cmd == "generate" || cmd == "drafter") {
    std::cerr << "tlt: this build has no LibTorch; model commands are unavailable\n";
    return 2;
  }
#endif
  if (cmd == "_head") return tlt::cli::HeadMain(*flags);
  if (cmd == "_node") return tlt::cli::NodeMain(*flags);
  std::cerr << "tlt: unknown command '" << cmd << (sub.empty() ? "" : " " + sub) << "'\n" << kUsage;
  return 2;
}
