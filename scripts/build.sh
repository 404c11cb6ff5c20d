#!/usr/bin/env bash
# Configures and builds tlt into build/ (or $TLT_BUILD_DIR). Extra arguments go to cmake.
# Uses every core; set TLT_JOBS to limit.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TLT_BUILD_DIR:-$root/build}
jobs=${TLT_JOBS:-$(nproc)}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=${TLT_BUILD_TYPE:-RelWithDebInfo} "$@"
cmake --build "$build" -j "$jobs"
