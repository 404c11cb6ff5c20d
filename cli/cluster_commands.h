// The cluster commands of `tlt`. Each returns the process exit code and prints errors
// that say what to do next.
#pragma once

#include "cli/flags.h"

namespace tlt::cli {

int StartCommand(const Flags& flags);      // tlt start --head | --address HOST:PORT
int StopCommand(const Flags& flags);       // tlt stop [--address HOST:PORT]
int StatusCommand(const Flags& flags);     // tlt status [--json]
int ListActorsCommand(const Flags& flags); // tlt list actors [--state S] [--json]
int GetActorCommand(const Flags& flags);   // tlt get actor ID|NAME [--json]
int ListEventsCommand(const Flags& flags); // tlt list events [--json]
int HeadMain(const Flags& flags);          // tlt _head (daemon started by tlt start)
int NodeMain(const Flags& flags);          // tlt _node (daemon started by tlt start)

}  // namespace tlt::cli
