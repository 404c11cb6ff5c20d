#!/usr/bin/env bash
# Sets up, builds and runs the main job on this machine with an embedded head.
# Until the TLT pipeline lands this is the hello_actors example pipeline.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${TLT_BUILD_DIR:-$root/build}
exec "$build/examples/hello_actors/hello_actors" "$@"
