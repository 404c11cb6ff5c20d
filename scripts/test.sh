#!/usr/bin/env bash
# Sets up (Debian packages), builds and runs every test with ctest. Exit code: ctest's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${TLT_BUILD_DIR:-$root/build}
cd "$build"
ctest --output-on-failure --timeout 900 -j "${TLT_TEST_JOBS:-2}"
